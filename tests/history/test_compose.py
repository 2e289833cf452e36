"""The composed upstream body: valid messages for any selection, byte-stable, client body untouched."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import orjson

from faregate.history.compose import (
    SUMMARY_PREFIX,
    compose_body,
    kept_indices,
    summary_prompt,
    summary_tokens,
)
from faregate.history.exchanges import Conversation, role_problem, split_conversation
from faregate.history.policies import Selection, summary, window
from faregate.tokens import count_messages_anthropic, count_messages_openai

MODEL = "gpt-4o"


def openai_body() -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
    for i in range(4):
        call = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "lookup", "arguments": f'{{"i":{i}}}'},
        }
        messages += [
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{i}", "content": f"result {i}"},
            {"role": "assistant", "content": f"Answer {i}."},
        ]
        if i == 1:
            messages.append({"role": "system", "content": "From now on, answer in French."})
    messages.append({"role": "user", "content": "Last question?"})
    return {"model": "gpt-4o", "temperature": 0, "messages": messages}


def anthropic_body() -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for i in range(4):
        messages += [
            {"role": "user", "content": f"Question {i}?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": f"tu_{i}", "name": "lookup", "input": {"i": i}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": f"tu_{i}", "content": f"r{i}"}],
            },
            {"role": "assistant", "content": [{"type": "text", "text": f"Answer {i}."}]},
        ]
    messages.append({"role": "user", "content": "Last question?"})
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "system": system, "messages": messages}


def split(protocol: str, body: dict[str, Any]) -> Conversation:
    conv = split_conversation(protocol, body, MODEL)  # type: ignore[arg-type]
    assert conv is not None
    return conv


def every_selection(conv: Conversation) -> list[Selection]:
    n = len(conv.history)
    return [Selection(list(keep)) for r in range(n + 1) for keep in itertools.combinations(range(n), r)]


def test_openai_any_selection_keeps_tool_calls_with_results_and_system_messages() -> None:
    body = openai_body()
    conv = split("openai", body)
    assert len(conv.history) == 4
    for selection in every_selection(conv):
        out = compose_body(body, conv, selection, None)
        messages = out["messages"]
        assert role_problem("openai", messages) is None, selection.keep
        assert [m["content"] for m in messages if m["role"] == "system"] == [
            "Be brief.",
            "From now on, answer in French.",
        ]
        assert messages[-1] == {"role": "user", "content": "Last question?"}
        calls = [c["id"] for m in messages for c in m.get("tool_calls") or ()]
        results = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
        assert calls == results == [f"call_{i}" for i in selection.keep]


def test_anthropic_any_selection_alternates_and_keeps_tool_results_with_their_calls() -> None:
    body = anthropic_body()
    conv = split("anthropic", body)
    assert len(conv.history) == 4
    for selection in every_selection(conv):
        out = compose_body(body, conv, selection, None)
        assert role_problem("anthropic", out["messages"]) is None, selection.keep
        assert out["messages"][0]["role"] == "user"
        assert out["system"] is body["system"]  # untouched without a summary


def test_compose_never_mutates_the_client_body() -> None:
    for protocol, body in (("openai", openai_body()), ("anthropic", anthropic_body())):
        before = copy.deepcopy(body)
        conv = split(protocol, body)
        out = compose_body(
            body, conv, window(conv, keep_last=1, max_tokens=None), "The user asked 3 questions."
        )
        assert body == before
        assert out is not body and out["messages"] is not body["messages"]
        out["messages"].append({"role": "user", "content": "x"})
        assert body == before


def test_openai_summary_goes_after_the_leading_system_messages() -> None:
    body = openai_body()
    conv = split("openai", body)
    selection = summary(conv, summarized_upto=3, summary_tokens=0)
    out = compose_body(body, conv, selection, "Questions 0-2 were answered.")
    messages = out["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1] == {"role": "system", "content": SUMMARY_PREFIX + "Questions 0-2 were answered."}
    # a system message sent mid-conversation is pinned, and stays after the summary of what preceded it
    assert messages[2] == {"role": "system", "content": "From now on, answer in French."}
    assert messages[3]["content"] == "Question 3?"
    early = compose_body(body, conv, summary(conv, summarized_upto=1, summary_tokens=0), "Q0.")
    assert [m["content"] for m in early["messages"][:3]] == [
        "Be brief.",
        SUMMARY_PREFIX + "Q0.",
        "Question 1?",
    ]
    assert {k: v for k, v in out.items() if k != "messages"} == {"model": "gpt-4o", "temperature": 0}


def test_anthropic_summary_is_appended_to_system() -> None:
    body = anthropic_body()
    conv = split("anthropic", body)
    selection = summary(conv, summarized_upto=2, summary_tokens=0)
    out = compose_body(body, conv, selection, "Two questions answered.")
    assert out["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": SUMMARY_PREFIX + "Two questions answered."},
    ]
    body["system"] = "Be brief."
    assert compose_body(body, conv, selection, "S")["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": SUMMARY_PREFIX + "S"},
    ]
    del body["system"]
    assert compose_body(body, conv, selection, "S")["system"] == [
        {"type": "text", "text": SUMMARY_PREFIX + "S"}
    ]


def test_composition_is_byte_stable() -> None:
    for protocol, make in (("openai", openai_body), ("anthropic", anthropic_body)):
        outputs = set()
        for _ in range(3):
            body = orjson.loads(orjson.dumps(make()))  # as if parsed again from the wire
            conv = split(protocol, body)
            selection = summary(conv, summarized_upto=2, summary_tokens=0)
            outputs.add(orjson.dumps(compose_body(body, conv, selection, "Same summary.")))
        assert len(outputs) == 1


def test_summary_tokens_is_what_the_summary_adds_to_the_count() -> None:
    for protocol, body, counter in (
        ("openai", openai_body(), count_messages_openai),
        ("anthropic", anthropic_body(), count_messages_anthropic),
    ):
        conv = split(protocol, body)
        selection = window(conv, keep_last=1, max_tokens=None)
        text = "The user asked about lookups 0, 1 and 2; the answers were 0, 1 and 2."
        with_summary = counter(MODEL, compose_body(body, conv, selection, text))
        without = counter(MODEL, compose_body(body, conv, selection, None))
        assert with_summary - without == summary_tokens(protocol, MODEL, text)  # type: ignore[arg-type]


def test_kept_indices_are_pinned_kept_and_current() -> None:
    body = openai_body()
    conv = split("openai", body)
    assert kept_indices(conv, Selection([])) == [0, 9, 18]  # the two system messages and the question
    assert kept_indices(conv, Selection([3])) == [0, 9, 14, 15, 16, 17, 18]


def test_summary_prompt_extends_rather_than_rewrites() -> None:
    first = summary_prompt(["user: My name is Ada.\nassistant: Hello Ada."], None)
    assert len(first) == 1 and first[0]["role"] == "user"
    assert "names, numbers" in first[0]["content"] and "My name is Ada." in first[0]["content"]
    assert "previous summary" not in first[0]["content"].lower()
    later = summary_prompt(["user: I live in Oslo."], "The user is Ada.")
    content = later[0]["content"]
    assert "Extend the previous summary" in content
    assert "<previous_summary>\nThe user is Ada.\n</previous_summary>" in content
    assert content.index("The user is Ada.") < content.index("I live in Oslo.")
