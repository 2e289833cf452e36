"""Volatile spans in a request's prefix: what is scanned, where each finding points, odd bodies."""

from __future__ import annotations

from typing import Any

import pytest

from faregate.prompt_cache.findings import Finding, prefix_findings, system_text, tool_names

UUID = "3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b"
STAMP = "2025-03-04T10:15:00Z"
STATIC = "You are the billing assistant for Acme. Answer briefly and cite the refund policy."


def _text_at(body_text: str, finding: Finding) -> str:
    return body_text[finding.start : finding.end]


def test_iso_timestamp_in_anthropic_system_string() -> None:
    system = f"{STATIC}\nCurrent time: {STAMP}\nBe kind."
    (finding,) = prefix_findings("anthropic", {"system": system, "messages": []})
    start = system.index(STAMP)
    assert finding == Finding("timestamp", STAMP, f"system:{start}-{start + len(STAMP)}", start, start + 20)
    assert _text_at(system, finding) == finding.text


def test_block_list_system_names_the_block_and_keeps_its_index() -> None:
    blocks: list[Any] = [
        {"type": "text", "text": STATIC},
        {"type": "image", "source": {"type": "base64", "data": "..."}},
        {"type": "text", "text": f"Session {UUID}.", "cache_control": {"type": "ephemeral"}},
    ]
    (finding,) = prefix_findings("anthropic", {"system": blocks})
    assert (finding.kind, finding.location) == ("uuid", "system[2]:8-44")
    assert _text_at(blocks[2]["text"], finding) == UUID
    assert system_text("anthropic", {"system": blocks}) == [
        ("system[0]", STATIC),
        ("system[2]", f"Session {UUID}."),
    ]


def test_openai_leading_system_and_developer_messages() -> None:
    developer = f"Today is Tuesday, March 4, 2025. {STATIC}"
    body = {
        "messages": [
            {"role": "system", "content": STATIC},
            {"role": "developer", "content": developer},
            {"role": "user", "content": f"my order {UUID}"},  # the conversation, not the prefix
            {"role": "system", "content": f"late system message {STAMP}"},  # after a user turn: not leading
        ]
    }
    (finding,) = prefix_findings("openai", body)
    assert (finding.kind, finding.text, finding.location) == (
        "date",
        "Tuesday, March 4, 2025",
        "messages[1]:9-31",
    )
    assert _text_at(developer, finding) == finding.text


def test_openai_content_parts_are_located_by_part() -> None:
    body = {
        "messages": [
            {
                "role": "developer",
                "content": [{"type": "text", "text": STATIC}, {"type": "text", "text": f"Now: {STAMP}"}],
            }
        ]
    }
    (finding,) = prefix_findings("openai", body)
    assert finding.location == "messages[0].content[1]:5-25"


def test_tool_descriptions_are_scanned_in_cache_order() -> None:
    tools = [
        {"name": "lookup", "description": "Find an order.", "input_schema": {"type": "object"}},
        {
            "name": "refund",
            "description": f"Refund session {UUID} only.",
            "input_schema": {
                "type": "object",
                "properties": {"when": {"type": "string", "description": f"defaults to {STAMP}"}},
            },
        },
    ]
    system = f"Current time: {STAMP}"
    found = prefix_findings("anthropic", {"system": system, "tools": tools})
    # Anthropic caches tools before the system prompt, so the tools' findings come first
    assert [(f.kind, f.location) for f in found] == [
        ("uuid", "tools[1].description:15-51"),
        ("timestamp", "tools[1].input_schema.properties.when.description:12-32"),
        ("timestamp", "system:14-34"),
    ]
    assert _text_at(tools[1]["description"], found[0]) == UUID  # type: ignore[arg-type]


def test_openai_tools_come_after_the_system_prompt_and_use_their_json_path() -> None:
    tools = [{"type": "function", "function": {"name": "refund", "description": f"Session {UUID}"}}]
    body = {"messages": [{"role": "system", "content": f"Now: {STAMP}"}], "tools": tools}
    found = prefix_findings("openai", body)
    assert [(f.kind, f.location) for f in found] == [
        ("timestamp", "messages[0]:5-25"),
        ("uuid", "tools[0].function.description:8-44"),
    ]
    legacy = {"messages": [], "functions": [{"name": "refund", "description": f"Session {UUID}"}]}
    assert [f.location for f in prefix_findings("openai", legacy)] == ["functions[0].description:8-44"]


def test_unsorted_json_is_reported_in_text_but_not_in_a_tool_schema() -> None:
    schema = {
        "type": "object",
        "required": ["b"],
        "properties": {"b": {"type": "string"}, "a": {"type": "string"}},
    }
    tools = [{"name": "t", "description": "Pass options.", "input_schema": schema}]
    assert prefix_findings("anthropic", {"system": STATIC, "tools": tools}) == []
    system = 'Defaults: {"zone": "eu", "account": "main"}'
    (finding,) = prefix_findings("anthropic", {"system": system, "tools": tools})
    assert finding.kind == "unsorted_json" and finding.text == '{"zone": "eu", "account": "main"}'


def test_clean_prompt_has_no_findings() -> None:
    tools = [
        {"name": "lookup", "description": "Find an order by its number.", "input_schema": {"type": "object"}}
    ]
    assert prefix_findings("anthropic", {"system": STATIC, "tools": tools, "messages": []}) == []
    assert prefix_findings("openai", {"messages": [{"role": "system", "content": STATIC}]}) == []
    assert prefix_findings("openai", {"messages": [{"role": "user", "content": f"at {STAMP}"}]}) == []


def test_tool_names_in_order() -> None:
    anthropic = {
        "tools": [{"name": "b"}, {"name": "a"}, {"type": "web_search_20250305", "name": "web_search"}]
    }
    assert tool_names("anthropic", anthropic) == ("b", "a", "web_search")
    openai = {
        "tools": [{"type": "function", "function": {"name": "b"}}, {"type": "function", "function": {}}]
    }
    assert tool_names("openai", openai) == ("b", "")
    assert tool_names("openai", {"functions": [{"name": "x"}, {"name": "y"}]}) == ("x", "y")
    assert tool_names("anthropic", {"messages": []}) is None
    assert tool_names("openai", {"tools": []}) is None


def _deep(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"description": f"at {STAMP}"}
    for _ in range(depth):
        node = {"properties": {"x": node}}
    return node


ODD_BODIES: list[Any] = [
    {},
    {"system": 5, "tools": "x", "messages": "x"},
    {"system": [None, 3, "text", {"type": "text", "text": 7}, {"type": "text"}]},
    {"system": {"type": "text", "text": STAMP}},
    {"messages": [None, {"role": "system", "content": {"a": 1}}, {"role": "system", "content": [None, 5]}]},
    {"messages": [{"role": ["system"], "content": STAMP}]},
    {"tools": [None, 5, "x", {"function": "x"}, {"description": 5, "input_schema": [1, {"description": 2}]}]},
    {"functions": {"name": "x"}, "tools": {"0": {"name": "x"}}},
    {"tools": [{"name": "deep", "input_schema": _deep(5000)}]},
    [],
    None,
]


@pytest.mark.parametrize("body", ODD_BODIES)
@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_odd_bodies_never_raise(protocol: Any, body: Any) -> None:
    assert isinstance(prefix_findings(protocol, body), list)
    assert isinstance(system_text(protocol, body), list)
    names = tool_names(protocol, body)
    assert names is None or isinstance(names, tuple)
