"""Splitting a request into exchanges, and judging whether its messages follow the provider's rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from faregate.history.exchanges import role_problem, split_conversation, turn_text
from faregate.tokens import REPLY_PRIMING_TOKENS, count_messages_anthropic, count_messages_openai

MODEL = "gpt-4o"


def openai_agent() -> list[dict[str, Any]]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
    }
    return [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "4 C, rain"},
        {"role": "assistant", "content": "4 C and rain."},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
        {"role": "developer", "content": "Answer in Celsius."},
        {"role": "assistant", "content": "Sunny, 7 C."},
        {"role": "user", "content": "Thanks!"},
    ]


def anthropic_agent() -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Oslo"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "4 C, rain"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "4 C and rain."}]},
        {"role": "user", "content": "And tomorrow?"},
        {"role": "assistant", "content": "Sunny, 7 C."},
        {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]},
    ]


def test_openai_exchanges_keep_tool_calls_with_results_and_pin_system_messages() -> None:
    messages = openai_agent()
    conv = split_conversation("openai", {"messages": messages}, MODEL)
    assert conv is not None
    assert conv.pinned == (0, 6)  # the system message and the developer message mid-conversation
    assert [(e.start, e.end) for e in conv.history] == [(1, 5), (5, 8)]
    assert conv.current is not None and (conv.current.start, conv.current.end) == (8, 9)
    assert conv.query == "Thanks!"
    assert conv.messages is messages
    first = conv.history[0].text
    assert first == (
        "user: Weather in Oslo?\n"
        'assistant: weather {"city":"Oslo"}\n'
        "tool: 4 C, rain\n"
        "assistant: 4 C and rain."
    )
    assert "Celsius" not in conv.history[1].text  # pinned messages are not part of an exchange's text
    assert conv.history[1].text == "user: And tomorrow?\nassistant: Sunny, 7 C."


def test_exchange_tokens_add_up_to_the_body_count() -> None:
    for protocol, messages, counter in (
        ("openai", openai_agent(), count_messages_openai),
        ("anthropic", anthropic_agent(), count_messages_anthropic),
    ):
        body = {"messages": messages}
        conv = split_conversation(protocol, body, MODEL)  # type: ignore[arg-type]
        assert conv is not None and conv.current is not None
        pinned = counter(MODEL, {"messages": [messages[i] for i in conv.pinned]}) - REPLY_PRIMING_TOKENS
        exchanges = sum(e.tokens for e in conv.history) + conv.current.tokens
        assert exchanges + pinned + REPLY_PRIMING_TOKENS == counter(MODEL, body)
        assert all(e.tokens > 0 for e in conv.history)


def test_anthropic_tool_results_stay_in_their_exchange() -> None:
    conv = split_conversation("anthropic", {"messages": anthropic_agent()}, MODEL)
    assert conv is not None
    assert conv.pinned == ()
    assert [(e.start, e.end) for e in conv.history] == [(0, 4), (4, 6)]
    assert "tool: 4 C, rain" in conv.history[0].text
    assert 'assistant: weather {"city":"Oslo"}' in conv.history[0].text
    assert conv.query == "Thanks!"
    assert turn_text(conv, conv.history[1]) == "And tomorrow?"


def test_anthropic_turn_that_also_answers_tool_calls_does_not_open_an_exchange() -> None:
    messages = [
        *anthropic_agent()[:2],
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "tu_1", "content": "4 C"},
                {"type": "text", "text": "Also, what about Bergen?"},
            ],
        },
    ]
    conv = split_conversation("anthropic", {"messages": messages}, MODEL)
    assert conv is not None
    assert conv.history == []  # splitting here would let a policy drop the tool_use and keep its result
    assert conv.current is not None and (conv.current.start, conv.current.end) == (0, 3)
    assert conv.query == "Also, what about Bergen?"


def test_digest_is_stable_for_the_same_turn_resent() -> None:
    first = split_conversation("openai", {"messages": openai_agent()}, MODEL)
    later = [
        *copy.deepcopy(openai_agent()),
        {"role": "assistant", "content": "You're welcome."},
        {"role": "user", "content": "Bye"},
    ]
    second = split_conversation("openai", {"messages": later}, MODEL)
    assert first is not None and second is not None and first.current is not None
    assert [e.digest for e in second.history[:2]] == [e.digest for e in first.history]
    assert second.history[2].digest != first.current.digest  # now with its answer
    assert len(first.history[0].digest) == 32 and int(first.history[0].digest, 16) >= 0
    # a known value: BLAKE2b-128 of the text, the same in every process
    same_text = split_conversation("openai", {"messages": [{"role": "user", "content": "hi"}]}, MODEL)
    assert same_text is not None and same_text.current is not None
    assert same_text.current.digest == "5964fcd31aafb559173b51a0012fcf35"


def test_messages_before_the_first_user_turn_are_pinned() -> None:
    messages = [{"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "Hi"}]
    conv = split_conversation("openai", {"messages": messages}, MODEL)
    assert conv is not None and conv.pinned == (0,)


@pytest.mark.parametrize(
    "body",
    [{}, {"messages": "hi"}, {"messages": []}, {"messages": [{"role": "system", "content": "x"}]}],
)
def test_no_conversation_without_a_user_turn(body: dict[str, Any]) -> None:
    assert split_conversation("openai", body, MODEL) is None
    assert split_conversation("anthropic", body, MODEL) is None


def test_anthropic_tool_result_only_messages_are_not_user_turns() -> None:
    messages = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "1"}]}]
    assert split_conversation("anthropic", {"messages": messages}, MODEL) is None


def test_valid_conversations_have_no_role_problem() -> None:
    assert role_problem("openai", openai_agent()) is None
    assert role_problem("anthropic", anthropic_agent()) is None


@pytest.mark.parametrize(
    ("protocol", "messages", "says"),
    [
        ("openai", ["hi"], "not an object"),
        ("openai", [{"role": "robot", "content": "x"}], "unknown role"),
        ("anthropic", [{"role": "system", "content": "x"}], "unknown role"),
        ("anthropic", [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}], "first"),
        ("anthropic", [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}], "both user"),
        (
            "anthropic",
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_9", "content": "1"}]},
            ],
            "tu_9",
        ),
        (
            "openai",
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": "ok"},
                {"role": "tool", "tool_call_id": "call_9", "content": "1"},
            ],
            "call_9",
        ),
        (
            "openai",
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "call_1", "function": {"name": "f"}}]},
                {"role": "user", "content": "never mind"},
            ],
            "no tool answer",
        ),
    ],
)
def test_role_problems(protocol: str, messages: list[Any], says: str) -> None:
    problem = role_problem(protocol, messages)  # type: ignore[arg-type]
    assert problem is not None and says in problem


def test_open_tool_calls_at_the_very_end_are_not_a_problem() -> None:
    messages = openai_agent()[:3]  # the agent loop is waiting for the tool's answer
    assert role_problem("openai", messages) is None
    dropped_result = openai_agent()[:3] + openai_agent()[4:]
    assert role_problem("openai", dropped_result) is not None
