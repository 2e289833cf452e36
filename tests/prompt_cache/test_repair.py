"""Prefix repair: volatile values move after the cached prefix, tools and JSON keys get sorted."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from faregate.call import Protocol
from faregate.prompt_cache.repair import NOTE_HEADER, Repair, repair_prefix
from faregate.volatile import find_volatile_spans

UUID_A = "550e8400-e29b-41d4-a716-446655440000"
UUID_B = "9b2f4c1a-7d3e-4f5a-8b6c-0d1e2f3a4b5c"


def system_text(ts: str = "2026-11-26T08:00:00Z", user: str = "u-123", session: str = UUID_A) -> str:
    return (
        "You are the support assistant for Acme.\n"
        f"Current time: {ts}\n"
        f"user_id: {user}\n"
        f"Session {session}\n"
        "Answer briefly."
    )


def repair(protocol: Protocol, body: dict[str, Any]) -> Repair:
    """`repair_prefix`, checking on every call that the client's body was not touched."""
    before = copy.deepcopy(body)
    result = repair_prefix(protocol, body)
    assert body == before
    return result


def anthropic(system: Any, messages: Any = None, **extra: Any) -> dict[str, Any]:
    if messages is None:
        messages = [{"role": "user", "content": "Where is my order?"}]
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "system": system, "messages": messages, **extra}


def openai(system: Any, *rest: dict[str, Any], role: str = "system", **extra: Any) -> dict[str, Any]:
    messages = [
        {"role": role, "content": system},
        *(rest or [{"role": "user", "content": "Where is my order?"}]),
    ]
    return {"model": "gpt-4o", "messages": messages, **extra}


def note_values(note: str) -> dict[str, str]:
    assert note.startswith(NOTE_HEADER + ": ")
    pairs = note[len(NOTE_HEADER) + 2 :].split("; ")
    return dict(pair.split(" = ", 1) for pair in pairs)


# --- relocation ------------------------------------------------------------------------------------------


def test_anthropic_values_move_to_a_note_in_the_final_user_turn() -> None:
    result = repair("anthropic", anthropic(system_text()))
    assert result.body["system"] == (
        "You are the support assistant for Acme.\n"
        "Current time: [timestamp 1]\n"
        "user_id: [user_id 1]\n"
        "Session [uuid 1]\n"
        "Answer briefly."
    )
    content = result.body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "Where is my order?"}
    assert content[1]["type"] == "text" and len(content) == 2
    assert note_values(content[1]["text"]) == {
        "[timestamp 1]": "2026-11-26T08:00:00Z",
        "[user_id 1]": "u-123",
        "[uuid 1]": UUID_A,
    }
    assert result.relocated == ("timestamp", "user_id", "uuid")
    assert result.changed and not result.tools_sorted and result.json_sorted == 0
    assert find_volatile_spans(result.body["system"]) == []  # nothing left for the lint to flag


def test_anthropic_note_goes_to_the_final_user_turn_not_earlier_history() -> None:
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": [{"type": "text", "text": "Where is my order?"}]},
    ]
    result = repair("anthropic", anthropic(system_text(), history))
    messages = result.body["messages"]
    assert messages[:2] == history[:2]
    assert messages[0] is history[0] and messages[1] is history[1]  # history shared, not copied
    assert messages[2]["content"][0] == {"type": "text", "text": "Where is my order?"}
    assert messages[2]["content"][1]["text"].startswith(NOTE_HEADER)


def test_anthropic_note_after_tool_results() -> None:
    tool_result = {"type": "tool_result", "tool_use_id": "toolu_01", "content": "shipped"}
    history = [
        {"role": "user", "content": "Where is my order?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {}}],
        },
        {"role": "user", "content": [tool_result]},
    ]
    result = repair("anthropic", anthropic(system_text(), history))
    content = result.body["messages"][-1]["content"]
    assert content[0] == tool_result
    assert content[1]["type"] == "text" and content[1]["text"].startswith(NOTE_HEADER)


def test_anthropic_empty_user_string_is_not_turned_into_an_empty_block() -> None:
    result = repair("anthropic", anthropic(system_text(), [{"role": "user", "content": ""}]))
    content = result.body["messages"][-1]["content"]
    assert len(content) == 1 and content[0]["text"].startswith(NOTE_HEADER)


def test_anthropic_system_blocks_keep_cache_control_and_other_blocks() -> None:
    marked = {"type": "text", "text": "Today is 2026-11-26.", "cache_control": {"type": "ephemeral"}}
    other = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    plain = {"type": "text", "text": "Rules without anything volatile."}
    result = repair(
        "anthropic", anthropic([marked, other, plain, "not a block", {"type": "text", "text": 3}])
    )
    system = result.body["system"]
    assert system[0] == {"type": "text", "text": "Today is [date 1].", "cache_control": {"type": "ephemeral"}}
    assert (
        system[1] is other
        and system[2] is plain
        and system[3:] == ["not a block", {"type": "text", "text": 3}]
    )
    assert result.relocated == ("date",)


def test_openai_note_is_inserted_before_the_last_user_message() -> None:
    tail: list[dict[str, Any]] = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Where is my order?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
    ]
    body = openai(system_text(), *tail)
    result = repair("openai", body)
    messages = result.body["messages"]
    assert (
        messages[0]["content"].startswith("You are the support assistant")
        and "[uuid 1]" in messages[0]["content"]
    )
    assert messages[1:3] == tail[:2]
    assert messages[3] == {"role": "system", "content": messages[3]["content"]}
    assert note_values(messages[3]["content"])["[user_id 1]"] == "u-123"
    assert messages[4:] == tail[2:]
    assert len(messages) == len(body["messages"]) + 1


def test_openai_developer_parts_and_several_system_messages_share_numbering() -> None:
    parts = [{"type": "text", "text": "Now: 2026-11-26T08:00:00Z"}, {"type": "text", "text": "Static rules."}]
    body = {
        "model": "o3",
        "messages": [
            {"role": "developer", "content": parts},
            {"role": "system", "content": "Also now: 2026-11-26T09:30:00Z"},
            {"role": "user", "content": "Hi"},
        ],
    }
    result = repair("openai", body)
    messages = result.body["messages"]
    assert messages[0]["content"][0] == {"type": "text", "text": "Now: [timestamp 1]"}
    assert messages[0]["content"][1] is parts[1]
    assert messages[1]["content"] == "Also now: [timestamp 2]"
    assert messages[2]["role"] == "developer"  # the note speaks in the system prompt's own role
    assert note_values(messages[2]["content"]) == {
        "[timestamp 1]": "2026-11-26T08:00:00Z",
        "[timestamp 2]": "2026-11-26T09:30:00Z",
    }


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
def test_repaired_prefix_is_byte_identical_across_requests(protocol: Protocol) -> None:
    """The point of it all: two requests differing only in volatile values share every prefix byte."""
    tools = [{"name": "b_tool", "input_schema": {"type": "object", "properties": {"y": {}, "x": {}}}}]

    def body(ts: str, user: str, session: str, question: str) -> dict[str, Any]:
        text = system_text(ts, user, session)
        if protocol == "anthropic":
            return anthropic(text, [{"role": "user", "content": question}], tools=tools)
        return openai(text, {"role": "user", "content": question})

    a = repair(protocol, body("2026-11-26T08:00:00Z", "u-123", UUID_A, "Where is my order?")).body
    b = repair(protocol, body("2026-12-01T17:45:12Z", "u-98765", UUID_B, "Cancel it")).body
    if protocol == "anthropic":
        assert json.dumps(a["system"]) == json.dumps(b["system"])
        assert json.dumps(a["tools"]) == json.dumps(b["tools"])
        notes = a["messages"][-1]["content"][-1]["text"], b["messages"][-1]["content"][-1]["text"]
    else:
        assert json.dumps(a["messages"][0]) == json.dumps(b["messages"][0])
        notes = a["messages"][1]["content"], b["messages"][1]["content"]
    assert note_values(notes[0]).keys() == note_values(notes[1]).keys()
    assert note_values(notes[1])["[timestamp 1]"] == "2026-12-01T17:45:12Z"


def test_placeholders_are_numbered_per_kind_in_order_even_for_equal_values() -> None:
    text = (
        "Made 2026-11-26T08:00:00Z by user_id: u-1. Now 2026-11-26T08:00:00Z, user_id: u-2. Epoch 1741010733."
    )
    result = repair("anthropic", anthropic(text))
    assert result.body["system"] == (
        "Made [timestamp 1] by user_id: [user_id 1]. "
        "Now [timestamp 2], user_id: [user_id 2]. Epoch [number 1]."
    )
    note = note_values(result.body["messages"][-1]["content"][-1]["text"])
    assert list(note) == ["[timestamp 1]", "[user_id 1]", "[timestamp 2]", "[user_id 2]", "[number 1]"]
    assert note["[timestamp 2]"] == "2026-11-26T08:00:00Z" and note["[number 1]"] == "1741010733"
    assert result.relocated == ("timestamp", "user_id", "timestamp", "user_id", "timestamp")


@pytest.mark.parametrize("protocol", ["anthropic", "openai"])
def test_nothing_volatile_returns_the_same_body(protocol: Protocol) -> None:
    text = "You are a helpful assistant. Knowledge cutoff: 2024-06. Use model gpt-4o-2024-08-06."
    body = anthropic(text) if protocol == "anthropic" else openai(text)
    result = repair(protocol, body)
    assert result.body is body
    assert not result.changed and result.relocated == () and result.describe() == ""


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],  # assistant prefill
        [],
        [{"role": "user", "content": None}],
    ],
)
def test_anthropic_without_a_final_user_turn_relocates_nothing(messages: list[Any]) -> None:
    body = anthropic(system_text(), messages)
    result = repair("anthropic", body)
    assert result.body is body and not result.changed


def test_openai_without_a_user_message_relocates_nothing() -> None:
    body = openai(system_text(), {"role": "assistant", "content": "Hello"})
    result = repair("openai", body)
    assert result.body is body and not result.changed


# --- JSON in the system prompt -------------------------------------------------------------------------


def test_unsorted_json_in_system_is_sorted_in_its_layout() -> None:
    text = 'Config: {"zeta": 1, "alpha": {"y": [3, 1, 2], "x": "é"}}\nCompact: {"b":1,"a":2}\nEnd.'
    result = repair("anthropic", anthropic(text))
    assert (
        result.body["system"]
        == 'Config: {"alpha": {"x": "é", "y": [3, 1, 2]}, "zeta": 1}\nCompact: {"a":2,"b":1}\nEnd.'
    )
    assert result.json_sorted == 2 and result.relocated == ()
    assert result.describe() == "json-sorted=2"


def test_indented_json_keeps_its_indentation() -> None:
    text = 'Schema:\n  {\n    "name": "x",\n    "age": 3\n  }\nDone.'
    result = repair("anthropic", anthropic(text))
    assert result.body["system"] == 'Schema:\n  {\n    "age": 3,\n    "name": "x"\n  }\nDone.'


def test_volatile_values_inside_unsorted_json_are_relocated_after_sorting() -> None:
    text = 'Context: {"user_id": "u-42", "now": "2026-11-26T08:00:00Z"}'
    result = repair("openai", openai(text))
    assert (
        result.body["messages"][0]["content"] == 'Context: {"now": "[timestamp 1]", "user_id": "[user_id 1]"}'
    )
    assert result.json_sorted == 1 and result.relocated == ("timestamp", "user_id")


def test_json_is_sorted_even_when_nothing_can_be_relocated() -> None:
    body = anthropic('Now 2026-11-26T08:00:00Z. {"b": 1, "a": 2}', [{"role": "assistant", "content": "x"}])
    result = repair("anthropic", body)
    assert result.body["system"] == 'Now 2026-11-26T08:00:00Z. {"a": 2, "b": 1}'
    assert result.relocated == () and result.json_sorted == 1


def test_json_with_duplicate_keys_is_left_alone() -> None:
    body = anthropic('Data: {"b": 1, "a": 2, "b": 3}')
    result = repair("anthropic", body)
    assert result.body is body and not result.changed


# --- tools ---------------------------------------------------------------------------------------------


def schema(required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"query": {"type": "string", "enum": ["z", "a"]}, "limit": {"type": "integer"}},
        "required": required,
    }


def test_anthropic_tools_sorted_by_name_and_schema_keys_sorted_lists_kept() -> None:
    tools = [
        {"name": "search", "description": "Search", "input_schema": schema(["query", "limit"])},
        {"name": "lookup", "description": "Lookup", "input_schema": {"properties": {}, "type": "object"}},
    ]
    result = repair("anthropic", anthropic("Static.", tools=tools))
    new = result.body["tools"]
    assert [t["name"] for t in new] == ["lookup", "search"]
    assert new[0] is tools[1]  # already sorted schema: the same object
    searched = new[1]["input_schema"]
    assert list(searched) == ["properties", "required", "type"]
    assert list(searched["properties"]) == ["limit", "query"]
    assert searched["required"] == ["query", "limit"] and searched["properties"]["query"]["enum"] == [
        "z",
        "a",
    ]
    assert list(searched["properties"]["query"]) == ["enum", "type"]
    assert result.tools_sorted and result.json_sorted == 1
    assert result.describe() == "tools-sorted; json-sorted=1"


def test_openai_tools_and_legacy_functions_sorted() -> None:
    def fn(name: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"type": "function", "function": {"name": name, "parameters": params}}

    tools = [fn("b", {"type": "object"}), fn("a", schema(["limit"]))]
    functions = [{"name": "y", "parameters": {}}, {"name": "x", "parameters": {"type": "object", "a": 1}}]
    result = repair("openai", openai("Static.", tools=tools, functions=functions))
    assert [t["function"]["name"] for t in result.body["tools"]] == ["a", "b"]
    assert list(result.body["tools"][0]["function"]["parameters"]) == ["properties", "required", "type"]
    assert [f["name"] for f in result.body["functions"]] == ["x", "y"]
    assert list(result.body["functions"][0]["parameters"]) == ["a", "type"]
    assert result.tools_sorted and result.json_sorted == 2


def test_tool_without_a_name_leaves_the_order_but_sorts_schemas() -> None:
    tools = [
        {"name": "search", "input_schema": {"type": "object", "properties": {}}},
        {"description": "nameless", "input_schema": {"type": "object"}},
        {"name": "lookup", "input_schema": {"type": "object"}},
    ]
    result = repair("anthropic", anthropic("Static.", tools=tools))
    new = result.body["tools"]
    assert [t.get("name") for t in new] == ["search", None, "lookup"]
    assert list(new[0]["input_schema"]) == ["properties", "type"]
    assert not result.tools_sorted and result.json_sorted == 1


def test_openai_custom_tool_without_function_name_leaves_the_order() -> None:
    tools = [{"type": "function", "function": {"name": "b"}}, {"type": "custom", "custom": {"name": "a"}}]
    body = openai("Static.", tools=tools)
    assert repair("openai", body).body is body


def test_sorted_tools_return_the_same_body() -> None:
    tools = [
        {"name": "a", "input_schema": {"type": "object"}},
        {"name": "b", "input_schema": {"type": "object"}},
    ]
    body = anthropic("Static.", tools=tools)
    assert repair("anthropic", body).body is body


def test_client_cache_control_stays_on_the_last_tool() -> None:
    mark = {"type": "ephemeral", "ttl": "1h"}
    tools = [
        {"name": "b", "input_schema": {"type": "object"}},
        {"name": "c", "input_schema": {"type": "object"}},
        {"name": "a", "input_schema": {"type": "object"}, "cache_control": mark},
    ]
    result = repair("anthropic", anthropic("Static.", tools=tools))
    new = result.body["tools"]
    assert [t["name"] for t in new] == ["a", "b", "c"]
    assert "cache_control" not in new[0] and "cache_control" not in new[1]
    assert new[2]["cache_control"] is mark
    assert sum("cache_control" in t for t in new) == 1


# --- describe, odd bodies, speed -----------------------------------------------------------------------


def test_describe() -> None:
    assert Repair({}, (), False, 0).describe() == ""
    assert not Repair({}, (), False, 0).changed
    full = Repair({}, ("timestamp", "uuid", "timestamp"), True, 2)
    assert full.describe() == "relocated=timestamp,uuid; tools-sorted; json-sorted=2"
    assert Repair({}, (), True, 0).changed and Repair({}, (), False, 1).changed


ODD_BODIES: list[tuple[Protocol, dict[str, Any]]] = [
    ("anthropic", {}),
    ("anthropic", {"system": 42, "messages": [{"role": "user", "content": "hi"}]}),
    ("anthropic", {"system": {"text": "Today is 2026-11-26."}, "messages": "nope"}),
    ("anthropic", {"system": "Today is 2026-11-26.", "messages": "nope"}),
    ("anthropic", {"system": "Today is 2026-11-26.", "messages": ["hi"]}),
    ("anthropic", {"system": "Today is 2026-11-26.", "messages": [{"role": "user", "content": {"x": 1}}]}),
    ("anthropic", {"system": [None, 1, {"type": "text"}], "messages": [{"role": "user", "content": "hi"}]}),
    ("anthropic", {"tools": "nope"}),
    ("anthropic", {"tools": [None, 3, {"name": 5}, {"name": "a", "input_schema": "not a dict"}]}),
    ("anthropic", {"tools": [{"name": "b", "input_schema": {1: "x", "a": "y"}}, {"name": "a"}]}),
    ("openai", {}),
    ("openai", {"messages": None}),
    ("openai", {"messages": [None, {"role": "system", "content": "Today is 2026-11-26."}]}),
    ("openai", {"messages": [{"role": "system", "content": None}, {"role": "user"}]}),
    ("openai", {"messages": [{"role": "system", "content": [7, {"type": "image_url"}]}, {"role": "user"}]}),
    ("openai", {"messages": [{"role": "system", "content": '{not json} {"b": 1, "a": }'}, "x"]}),
    ("openai", {"tools": [{"type": "function", "function": "nope"}], "functions": {"name": "x"}}),
]


@pytest.mark.parametrize(("protocol", "body"), ODD_BODIES)
def test_odd_bodies_do_not_raise(protocol: Protocol, body: dict[str, Any]) -> None:
    result = repair(protocol, body)
    assert isinstance(result.body, dict)


def test_odd_body_parts_it_understands_are_still_repaired() -> None:
    body = {
        "system": "Today is 2026-11-26.",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [None],
    }
    result = repair("anthropic", body)
    assert result.body["system"] == "Today is [date 1]." and result.body["tools"] == [None]


def test_deeply_nested_schema_is_left_alone() -> None:
    deep: dict[str, Any] = {"b": 1, "a": 1}
    for _ in range(5000):
        deep = {"b": deep, "a": 1}
    body = anthropic("Static.", tools=[{"name": "t", "input_schema": deep}])
    assert repair_prefix("anthropic", body).body is body  # no deepcopy check: too deep to copy


def test_a_long_prompt_relocates_every_volatile_value_in_order() -> None:
    """Speed is measured in bench/prefix_stage_bench.py, not here."""
    rules = "".join(
        f"Rule: always be polite to the customer and cite the policy section.{i % 7}\n" for i in range(175)
    )
    text = system_text() + "\n" + rules + "Today is 2026-11-26. Session " + UUID_B + "\n"
    assert len(text) > 12_000
    body = anthropic(text)
    assert repair_prefix("anthropic", body).relocated == ("timestamp", "user_id", "uuid", "date", "uuid")
