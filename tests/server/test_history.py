"""History policies end to end: official SDKs → the gateway → the fake provider.

What the fake receives is what the policy sent upstream; the client's own body never changes. The
ledger must show the history tokens before and after, summary calls as events of their own, and
why a policy stepped aside or fell back.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from faregate.config import UpstreamSettings
from faregate.fake_provider import FakeProvider, Scenario
from faregate.ledger import CostEvent
from tests.fixtures.gateway import RunningGateway
from tests.server._support import SONNET, SONNET_DEPRECATION, anthropic_client, openai_client, wait_for_events

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)

SYSTEM = {"role": "system", "content": "You are a helpful travel assistant."}
TOPICS = [
    "What vaccinations do I need before travelling to Kenya?",
    "Recommend a budget hotel in Lisbon near the old town.",
    "How do I convert my driving licence for use in Japan?",
    "What is the best season to hike the Inca Trail to Machu Picchu?",
    "Explain the Schengen 90/180 day rule for US citizens.",
    "Which trains run from Zurich to Milan and how long do they take?",
    "How much should I tip taxi drivers in Mexico City?",
    "Suggest a three-day itinerary for Reykjavik in winter.",
    "Can I bring prescription medicine into Singapore?",
    "What is the baggage allowance on a Ryanair basic fare?",
]


def chat(n: int, *, query: str = "And what else should I know?") -> list[dict[str, Any]]:
    """A system prompt, n finished exchanges on distinct topics, then the new user turn."""
    messages: list[dict[str, Any]] = [SYSTEM]
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        messages += [
            {"role": "user", "content": f"{topic} (question {i})"},
            {"role": "assistant", "content": f"Here is a detailed answer about: {topic}. " * 5},
        ]
    return [*messages, {"role": "user", "content": query}]


def sent(fake: FakeProvider, index: int = -1) -> list[dict[str, Any]]:
    completions = [r for r in fake.requests if r.path.endswith(("/chat/completions", "/messages"))]
    body = completions[index].body
    assert body is not None
    messages: list[dict[str, Any]] = body["messages"]
    return messages


def ask(gw: RunningGateway, messages: list[dict[str, Any]], feature: str = "chat", **headers: str) -> str:
    client = openai_client(gw, default_headers={"X-FareGate-Feature": feature, **headers})
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    return reply.choices[0].message.content or ""


def drain(gw: RunningGateway) -> None:
    stage = gw.gateway.histories.stage
    asyncio.run_coroutine_threadsafe(stage.drain(), gw.loop).result(timeout=30)


def main_events(gw: RunningGateway) -> list[CostEvent]:
    return [e for e in gw.events() if e.history_policy != "summarize"]


# --- window ------------------------------------------------------------------------------------


def test_window_sends_the_last_turns_and_records_tokens_before_and_after(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"chat": {"history": {"policy": "window", "keep_last": 2}}})
    fake_provider.scenario = Scenario(include_usage=False)  # the ledger counts: anatomy unscaled
    messages = chat(6)
    original = [dict(m) for m in messages]
    ask(gw, messages)
    upstream = sent(fake_provider)
    assert upstream[0] == SYSTEM
    assert upstream[1:] == messages[-5:]  # two exchanges (four messages) and the new turn
    assert messages == original
    [event] = wait_for_events(gw, 1)
    assert event.history_policy == "window" and event.history_note is None
    assert 0 < event.history_tokens_after < event.history_tokens_before  # type: ignore[operator]
    assert event.history_tokens_after / event.history_tokens_before == pytest.approx(2 / 6, abs=0.05)  # type: ignore[operator]
    # The anatomy was measured on what was sent: its history is the kept two exchanges.
    assert event.history_tokens == pytest.approx(event.history_tokens_after, rel=0.1)
    # The removed tokens at gpt-4o-mini's input price ($0.15 / M) are the policy's saving.
    removed = event.history_tokens_before - event.history_tokens_after  # type: ignore[operator]
    assert event.history_saving_nusd == removed * 150
    assert event.baseline_cost_nusd == event.cost_nusd + event.history_saving_nusd


def test_window_never_splits_a_tool_call_from_its_result(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"chat": {"history": {"policy": "window", "keep_last": 1}}})
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
    }
    messages = [
        SYSTEM,
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "3°C, snow"},
        {"role": "assistant", "content": "It is 3°C and snowing."},
        {"role": "user", "content": "Thanks, and tomorrow?"},
    ]
    ask(gw, messages)
    assert sent(fake_provider) == [SYSTEM, *messages[3:]]


def test_anthropic_window_keeps_roles_alternating_and_the_system_prompt(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"chat": {"history": {"policy": "window", "keep_last": 1}}})
    turns = [m for m in chat(4) if m["role"] != "system"]
    client = anthropic_client(gw, default_headers={"X-FareGate-Feature": "chat"})
    client.messages.create(model=SONNET, max_tokens=100, system="Be brief.", messages=turns)  # type: ignore[arg-type]
    body = fake_provider.requests[-1].body
    assert body is not None and body["system"] == "Be brief."
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert body["messages"] == turns[-3:]


def test_a_conversation_that_breaks_role_rules_is_forwarded_unchanged_with_the_reason(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"chat": {"history": {"policy": "window", "keep_last": 1}}})
    messages = chat(4)
    messages.insert(3, {"role": "tool", "tool_call_id": "nobody_asked", "content": "42"})
    ask(gw, messages)
    assert sent(fake_provider) == messages
    [event] = wait_for_events(gw, 1)
    assert event.history_note is not None and event.history_note.startswith("roles:")
    assert event.history_tokens_before == event.history_tokens_after


# --- retrieve ----------------------------------------------------------------------------------


def test_retrieve_adds_the_earlier_turn_the_new_question_is_about(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"chat": {"history": {"policy": "retrieve", "keep_last": 2, "top": 1}}})
    messages = chat(10, query="Going back to Kenya: which vaccinations were required again?")
    ask(gw, messages)
    upstream = sent(fake_provider)
    kenya = messages[1]
    assert kenya in upstream  # retrieved from ten turns back
    assert len(upstream) == 1 + 2 + 4 + 1  # system, the retrieved exchange, the last two, the query
    assert upstream[-5:] == messages[-5:]
    [event] = wait_for_events(gw, 1)
    assert event.history_policy == "retrieve" and event.history_note is None


def test_retrieve_keeps_input_flat_as_the_conversation_grows(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"chat": {"history": {"policy": "retrieve", "keep_last": 2, "top": 2}}})
    sizes = []
    for n in (6, 8, 10):
        ask(gw, chat(n, query=f"Tell me more about item {n}."))
        drain(gw)  # the background embeddings of the verbatim window
        sizes.append(len(sent(fake_provider)))
    assert sizes == [1 + 8 + 1] * 3


# --- summary -----------------------------------------------------------------------------------

SUMMARY = {"policy": "summary", "keep_last": 2, "summary_every": 3, "summary_model": "fast"}


def test_summary_is_built_once_reused_byte_stable_and_extended_in_steps(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"chat": {"history": SUMMARY}})
    fake_provider.push(Scenario(text="SUMMARY-ONE: Kenya vaccines, Lisbon hotel, Japan licence."))
    ask(gw, chat(5))  # 5 finished exchanges: 3 older than the last 2 → summarise 3
    summary_call, first = [r.body for r in fake_provider.requests]
    assert summary_call is not None and first is not None
    assert "Kenya" in str(summary_call["messages"])
    assert first["messages"][1]["role"] == "system" and "SUMMARY-ONE" in first["messages"][1]["content"]
    assert first["messages"][2:] == chat(5)[-5:]

    ask(gw, chat(6))  # one more exchange: not yet a full step, the stored summary is reused
    assert len(fake_provider.requests) == 3
    second = sent(fake_provider)
    assert second[:2] == first["messages"][:2]  # byte-stable prefix: provider caching keeps working

    fake_provider.push(Scenario(text="SUMMARY-TWO: extended."))
    ask(gw, chat(8))  # three more exchanges since the summary: extend it
    extension = fake_provider.requests[-2].body
    assert extension is not None and "SUMMARY-ONE" in str(extension["messages"])
    assert "SUMMARY-TWO" in sent(fake_provider)[1]["content"]

    events = wait_for_events(gw, 5)
    summaries = [e for e in events if e.history_policy == "summarize"]
    assert len(summaries) == 2
    assert all(e.feature == "chat" and e.cost_nusd > 0 for e in summaries)
    main = [e for e in events if e.history_policy == "summary"]
    assert all(e.history_tokens_after < e.history_tokens_before for e in main)  # type: ignore[operator]
    # One derived conversation id for the whole chat (the client sent none).
    assert len({e.conversation for e in events}) == 1 and events[0].conversation.startswith("auto-")


def test_a_failed_summary_falls_back_to_the_window_and_the_request_succeeds(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"chat": {"history": SUMMARY}})
    # the summary call fails on its first attempt and on each of the upstream stage's retries
    failures = [Scenario(status=500)] * (1 + UpstreamSettings().retries)
    fake_provider.push(*failures, Scenario(text="The real answer."))
    assert ask(gw, chat(5)) == "The real answer."
    assert sent(fake_provider) == [SYSTEM, *chat(5)[-5:]]
    events = wait_for_events(gw, 2)
    [failed] = [e for e in events if e.history_policy == "summarize"]
    assert failed.status == 500
    [main] = [e for e in events if e.history_policy == "summary"]
    assert main.status == 200 and main.history_note is not None and "summary failed" in main.history_note


def test_summaries_never_cross_tenants(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"chat": {"history": SUMMARY}})
    fake_provider.push(Scenario(text="TEAM-A SUMMARY"))
    ask(gw, chat(5), **{"X-FareGate-Team": "a", "X-FareGate-Conversation": "c1"})
    fake_provider.push(Scenario(text="TEAM-B SUMMARY"))
    ask(gw, chat(5), **{"X-FareGate-Team": "b", "X-FareGate-Conversation": "c1"})
    assert "TEAM-B SUMMARY" in sent(fake_provider)[1]["content"]
    assert sum(1 for e in gw.events() if e.history_policy == "summarize") == 2


# --- reports -----------------------------------------------------------------------------------


def test_admin_api_and_cli_report_savings_and_cap_cuts_per_feature(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    from typer.testing import CliRunner

    from faregate.cli import app

    features = {"chat": {"history": {"policy": "window", "keep_last": 1}, "max_output_tokens": 50}}
    gw = make_gateway(features=features)
    fake_provider.scenario = Scenario(completion_tokens=80)
    ask(gw, chat(4))
    fake_provider.scenario = Scenario(completion_tokens=10)
    ask(gw, chat(5))
    wait_for_events(gw, 2)
    report = httpx.get(f"{gw.url}/faregate/v1/history").json()
    [chat_row] = report["features"]
    history, caps = chat_row["history"], chat_row["caps"]
    assert (chat_row["feature"], history["policy"], history["requests"], history["shortened"]) == (
        "chat",
        "window",
        2,
        2,
    )
    assert 0.6 < history["reduction"] < 0.9
    assert caps == {"capped_requests": 2, "cut": 1, "cut_share": 0.5}

    result = CliRunner().invoke(app, ["history", "stats", "--db", gw.config.database, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["caps"]["cut"] == 1
    table = CliRunner().invoke(app, ["history", "stats", "--db", gw.config.database])
    assert "chat" in table.output and "window" in table.output


def test_two_gateways_on_one_postgres_share_turn_vectors_and_summaries(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, postgres_db_url: str
) -> None:
    features = {
        "chat": {"history": {"policy": "retrieve", "keep_last": 2, "top": 1}},
        "long": {"history": SUMMARY},
    }
    first = make_gateway(database=postgres_db_url, features=features)
    second = make_gateway(database=postgres_db_url, features=features)
    ask(first, chat(8, query="Back to Kenya: which vaccinations again?"))
    drain(first)
    stats = asyncio.run_coroutine_threadsafe(second.gateway.histories.stats(), second.loop).result(10)
    assert stats[0]["feature"] == "chat" and stats[0]["turns"] == 8  # stored by the first replica
    ask(second, chat(8, query="Back to Kenya: which vaccinations again?"))
    assert chat(8)[1] in sent(fake_provider)

    fake_provider.push(Scenario(text="SHARED SUMMARY"))
    ask(first, chat(5), feature="long")
    ask(second, chat(6), feature="long")  # no new summary call: the first replica's is reused
    assert sum(1 for e in first.events() if e.history_policy == "summarize") == 1
    assert "SHARED SUMMARY" in sent(fake_provider)[1]["content"]
