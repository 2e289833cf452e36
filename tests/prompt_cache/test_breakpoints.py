"""Automatic Anthropic breakpoints: positions, priority, thresholds, TTL order, and never breaking a body."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from faregate import tokens
from faregate.prompt_cache.breakpoints import (
    Placement,
    Position,
    Ttl,
    _byte_bound,
    count_client_breakpoints,
    place_breakpoints,
)

SONNET = "claude-sonnet-4-5-20250929"  # minimum 1,024
HAIKU = "claude-haiku-4-5"  # minimum 4,096
OPUS = "claude-opus-4-5"  # minimum 4,096
FIVE: dict[str, str] = {"type": "ephemeral"}
HOUR: dict[str, str] = {"type": "ephemeral", "ttl": "1h"}
FRAMING = tokens.PER_MESSAGE_TOKENS


def words(n: int) -> str:
    """A text of exactly `n` tokens."""
    text = "word" + " word" * (n - 1)
    assert tokens.count_text(SONNET, text) == n
    return text


def tool(name: str, n: int) -> dict[str, Any]:
    """A tool definition whose JSON is exactly `n` tokens."""
    base = {"name": name, "description": "", "input_schema": {"type": "object"}}
    empty = tokens.count_text(SONNET, orjson.dumps(base).decode())
    for k in (n - empty, n - empty - 1, n - empty + 1):
        definition = {**base, "description": words(k)}
        if k >= 1 and tokens.count_text(SONNET, orjson.dumps(definition).decode()) == n:
            return definition
    raise AssertionError(f"no description gives {n} tokens")


def five(_: Position) -> Ttl:
    return "5m"


def ttls(**wanted: Ttl) -> Callable[[Position], Ttl]:
    return lambda position: wanted.get(position, "5m")


def conversation(*contents: Any) -> list[dict[str, Any]]:
    """Alternating user / assistant messages."""
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]


def big_body() -> dict[str, Any]:
    """Every position well above Sonnet's minimum: tools 1,200, system 1,500, history 600 more tokens."""
    return {
        "model": SONNET,
        "max_tokens": 100,
        "tools": [tool("a", 600), tool("b", 600)],
        "system": words(1500),
        "messages": conversation(words(300), words(300), "What now?"),
    }


def control(block: Any) -> Any:
    return block.get("cache_control") if isinstance(block, dict) else None


# --- positions -------------------------------------------------------------------------------------


def test_large_prompt_gets_tools_system_and_history() -> None:
    body = big_body()
    placed = place_breakpoints(body, SONNET, five)
    assert placed.added == ("tools", "system", "history")
    assert placed.ttls == ("5m", "5m", "5m")
    assert placed.client_breakpoints == 0
    out = placed.body
    assert control(out["tools"][1]) == FIVE and "cache_control" not in out["tools"][0]
    assert out["system"] == [{"type": "text", "text": body["system"], "cache_control": FIVE}]
    # the end of the history is the assistant turn before the final question, string content converted
    assert out["messages"][1]["content"] == [
        {"type": "text", "text": body["messages"][1]["content"], "cache_control": FIVE}
    ]
    assert out["messages"][2] is body["messages"][2] and out["messages"][0] is body["messages"][0]
    assert out["tools"][0] is body["tools"][0]
    assert count_client_breakpoints(out) == 3


@pytest.mark.parametrize(
    ("model", "size", "expected"),
    [
        (SONNET, 1024, ("system",)),
        (SONNET, 1023, ()),
        (HAIKU, 4096, ("system",)),
        (HAIKU, 4095, ()),
        (OPUS, 4096, ("system",)),
        (OPUS, 4095, ()),
        (SONNET, 2000, ("system",)),  # the same body: cached on Sonnet ...
        (HAIKU, 2000, ()),  # ... but under Haiku 4.5's minimum
    ],
)
def test_system_threshold(model: str, size: int, expected: tuple[Position, ...]) -> None:
    body = {"model": model, "system": words(size), "messages": conversation("hi")}
    assert place_breakpoints(body, model, five).added == expected


@pytest.mark.parametrize(("last_turn", "expected"), [(418, ("history",)), (417, ())])
def test_history_threshold(last_turn: int, expected: tuple[Position, ...]) -> None:
    # prefix through the assistant turn: system 100 + (framing + 500) + (framing + last_turn)
    assert 100 + FRAMING + 500 + FRAMING + 418 == 1024
    body = {"system": words(100), "messages": conversation(words(500), words(last_turn), "and?")}
    placed = place_breakpoints(body, SONNET, five)
    assert placed.added == expected
    assert place_breakpoints(body, HAIKU, five).added == ()


@pytest.mark.parametrize(("last_turn", "expected"), [(418, ("history",)), (417, ())])
def test_history_threshold_ends_at_the_marked_block(last_turn: int, expected: tuple[Position, ...]) -> None:
    # the thinking block after the marked text is not part of the cached prefix
    answer = [
        {"type": "text", "text": words(last_turn)},
        {"type": "thinking", "thinking": words(500), "signature": "s"},
    ]
    body = {"system": words(100), "messages": conversation(words(500), answer, "and?")}
    assert place_breakpoints(body, SONNET, five).added == expected


@pytest.mark.parametrize(("second", "expected"), [(524, ("tools",)), (523, ())])
def test_tools_threshold(second: int, expected: tuple[Position, ...]) -> None:
    body = {"tools": [tool("a", 500), tool("b", second)], "messages": conversation("hi")}
    placed = place_breakpoints(body, SONNET, five)
    assert placed.added == expected
    assert (control(placed.body["tools"][1]) == FIVE) == bool(expected)


def test_system_prefix_includes_the_tools() -> None:
    body = {"tools": [tool("a", 1000)], "system": words(24), "messages": conversation("hi")}
    assert place_breakpoints(body, SONNET, five).added == ("system",)  # tools alone are 1,000
    body["system"] = words(23)
    assert place_breakpoints(body, SONNET, five).added == ()


def test_system_list_gets_its_last_nonblank_block() -> None:
    system = [
        {"type": "text", "text": words(1100)},
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": " "},
    ]
    placed = place_breakpoints({"system": system, "messages": conversation("hi")}, SONNET, five)
    assert placed.added == ("system",)
    assert [control(block) for block in placed.body["system"]] == [None, FIVE, None]


@pytest.mark.parametrize("system", ["", "   ", [{"type": "text", "text": ""}], []])
def test_blank_system_gets_nothing(system: Any) -> None:
    body = {"tools": [tool("a", 1100)], "system": system, "messages": conversation("hi", "ok", "and?")}
    assert place_breakpoints(body, SONNET, five).added == ("tools", "history")


def test_blank_turn_gets_nothing() -> None:
    body = {"messages": conversation(words(1100), " ", "and?")}
    assert place_breakpoints(body, SONNET, five).added == ()


# --- the stable turn ----------------------------------------------------------------------------------

TOOL_USE = {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "x"}}
TOOL_RESULT = {"type": "tool_result", "tool_use_id": "t1", "content": "found it"}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        # multi-turn: the message before the last user turn
        (conversation(words(1100), "ok", "and?"), (1, 0)),
        (conversation(words(1100), "ok", "more", "sure", "and?"), (3, 0)),
        # agent loop after the user turn: the last message (the loop so far)
        (conversation(words(1100), [TOOL_USE], [TOOL_RESULT]), (2, 0)),
        (conversation("hi", "ok", words(1100), [TOOL_USE], [TOOL_RESULT]), (4, 0)),
        # a prefill is rewritten by the reply: never the stable end
        (conversation(words(1100), "ok", "and?", "{"), (1, 0)),
        (conversation(words(1100), [TOOL_USE], [TOOL_RESULT], "Result:"), (2, 0)),
        # single turn, with or without a prefill: nothing before the question
        (conversation(words(1100)), None),
        (conversation(words(1100), "{"), None),
        # no user turn at all (only tool results): no history breakpoint
        ([{"role": "user", "content": [TOOL_RESULT]}], None),
    ],
)
def test_history_position(messages: list[dict[str, Any]], expected: tuple[int, int] | None) -> None:
    placed = place_breakpoints({"messages": messages}, SONNET, five)
    marked = [
        (m, b)
        for m, message in enumerate(placed.body["messages"])
        if isinstance(message["content"], list)
        for b, block in enumerate(message["content"])
        if "cache_control" in block
    ]
    if expected is None:
        assert placed.added == () and marked == []
    else:
        assert placed.added == ("history",) and marked == [expected]


def test_thinking_and_blank_blocks_are_skipped() -> None:
    answer = [
        {"type": "thinking", "thinking": "hmm", "signature": "s"},
        {"type": "text", "text": "The answer."},
        {"type": "text", "text": ""},
        {"type": "redacted_thinking", "data": "xx"},
    ]
    placed = place_breakpoints({"messages": conversation(words(1100), answer, "and?")}, SONNET, five)
    assert placed.added == ("history",)
    assert [control(block) for block in placed.body["messages"][1]["content"]] == [None, FIVE, None, None]


def test_a_turn_with_nothing_markable_gets_nothing() -> None:
    only_thinking = [{"type": "thinking", "thinking": "hmm", "signature": "s"}, {"type": "mystery"}]
    body = {"messages": conversation(words(1100), only_thinking, "and?")}
    assert place_breakpoints(body, SONNET, five).added == ()


def test_tool_result_is_marked_at_the_block() -> None:
    result = [
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": words(1100)}]}
    ]
    body = {"messages": conversation("look it up", [TOOL_USE], result)}
    out = place_breakpoints(body, SONNET, five).body
    assert control(out["messages"][2]["content"][0]) == FIVE
    assert control(out["messages"][2]["content"][0]["content"][0]) is None


# --- client breakpoints -------------------------------------------------------------------------------


def with_control(block: dict[str, Any], value: Any = FIVE) -> dict[str, Any]:
    return {**block, "cache_control": value}


def layered_body() -> dict[str, Any]:
    """Two tools, two system blocks, two turns: room for client breakpoints beside FareGate's spots."""
    return {
        "tools": [tool("a", 600), tool("b", 600)],
        "system": [{"type": "text", "text": words(700)}, {"type": "text", "text": words(700)}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": words(300)}, {"type": "text", "text": "ok"}],
            },
            {"role": "assistant", "content": "Sure."},
            {"role": "user", "content": [{"type": "text", "text": "Next?"}]},
        ],
    }


def mark(body: dict[str, Any], *where: str, value: Any = FIVE) -> dict[str, Any]:
    """Put client breakpoints at `tool0`, `tool1`, `sys0`, `sys1`, `msg0`, `last` (the final question)."""
    for place in where:
        if place.startswith("tool"):
            body["tools"][int(place[-1])] = with_control(body["tools"][int(place[-1])], value)
        elif place.startswith("sys"):
            body["system"][int(place[-1])] = with_control(body["system"][int(place[-1])], value)
        elif place == "msg0":
            body["messages"][0]["content"][0] = with_control(body["messages"][0]["content"][0], value)
        else:
            body["messages"][-1]["content"][-1] = with_control(body["messages"][-1]["content"][-1], value)
    return body


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ((), ("tools", "system", "history")),
        (("tool0",), ("tools", "system", "history")),
        (("tool0", "sys0"), ("system", "history")),  # two slots: system, then history, then tools
        (("tool0", "sys0", "msg0"), ("system",)),
        (("tool0", "sys0", "msg0", "last"), ()),
        (("sys1",), ("tools", "history")),  # the client's breakpoint already sits on the system's end
        (("tool1", "sys1"), ("history",)),
    ],
)
def test_client_breakpoints_limit_and_cover(client: tuple[str, ...], expected: tuple[Position, ...]) -> None:
    body = mark(layered_body(), *client)
    placed = place_breakpoints(body, SONNET, five)
    assert placed.client_breakpoints == len(client) == count_client_breakpoints(body)
    assert placed.added == expected
    assert count_client_breakpoints(placed.body) == len(client) + len(expected) <= 4
    if not expected:
        assert placed.body is body


def test_top_level_cache_control_leaves_the_conversation_to_the_api() -> None:
    body = {**big_body(), "cache_control": FIVE}
    placed = place_breakpoints(body, SONNET, five)
    assert placed.client_breakpoints == 1
    assert placed.added == ("tools", "system")
    assert placed.body["cache_control"] == FIVE


# --- TTLs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "client_ttl", "wanted", "expected"),
    [
        ((), FIVE, {}, ("5m", "5m", "5m")),
        ((), FIVE, {"history": "1h"}, ("1h", "1h", "1h")),  # earlier ones upgraded
        ((), FIVE, {"system": "1h"}, ("1h", "1h", "5m")),
        ((), FIVE, {"tools": "1h"}, ("1h", "5m", "5m")),
        # a client 5m breakpoint on the first system block: system and history stay 5m after it
        (("sys0",), FIVE, {"tools": "1h", "system": "1h", "history": "1h"}, ("1h", "5m", "5m")),
        # a client 1h breakpoint on the final question: everything before it must be 1h
        (("last",), HOUR, {}, ("1h", "1h", "1h")),
        (("tool0",), HOUR, {"history": "1h"}, ("1h", "1h", "1h")),
        (("tool0",), {"type": "ephemeral", "ttl": "5m"}, {"history": "1h"}, ("5m", "5m", "5m")),
    ],
)
def test_ttls_stay_in_order(
    client: tuple[str, ...], client_ttl: dict[str, str], wanted: dict[str, Ttl], expected: tuple[Ttl, ...]
) -> None:
    body = mark(layered_body(), *client, value=client_ttl)
    placed = place_breakpoints(body, SONNET, ttls(**wanted))
    assert placed.added == ("tools", "system", "history")
    assert placed.ttls == expected
    written = [control(placed.body["tools"][1]), control(placed.body["system"][1])]
    written.append(control(placed.body["messages"][1]["content"][0]))
    assert written == [HOUR if ttl == "1h" else FIVE for ttl in expected]
    assert in_api_order(placed.body)


def test_top_level_one_hour_makes_every_added_breakpoint_one_hour() -> None:
    placed = place_breakpoints({**big_body(), "cache_control": HOUR}, SONNET, five)
    assert placed.added == ("tools", "system") and placed.ttls == ("1h", "1h")


@pytest.mark.parametrize("first", ["sys0", "msg0"])
def test_client_ttls_out_of_order_are_left_to_the_provider(first: str) -> None:
    body = mark(mark(layered_body(), first), "last", value=HOUR)  # 5m before 1h: the API will refuse
    placed = place_breakpoints(body, SONNET, five)
    assert placed.body is body and placed.added == () and placed.client_breakpoints == 2


def in_api_order(body: dict[str, Any]) -> bool:
    """Every `1h` breakpoint before any `5m` one, in request order."""
    seen: list[str] = []
    blocks = [*body.get("tools", []), *(body["system"] if isinstance(body.get("system"), list) else [])]
    for message in body["messages"]:
        if isinstance(message["content"], list):
            blocks.extend(message["content"])
    for block in blocks:
        if "cache_control" in block:
            seen.append(block["cache_control"].get("ttl", "5m"))
    return seen == sorted(seen, key=lambda ttl: ttl != "1h")


# --- bodies FareGate must not touch -------------------------------------------------------------------


def odd(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    body = big_body()
    change(body)
    return body


ODD_BODIES: dict[str, dict[str, Any]] = {
    "system int": odd(lambda b: b.update(system=5)),
    "system blocks strings": odd(lambda b: b.update(system=["a", "b"])),
    "messages dict": odd(lambda b: b.update(messages={"role": "user", "content": "hi"})),
    "messages missing": odd(lambda b: b.pop("messages")),
    "message string": odd(lambda b: b["messages"].insert(0, "hi")),
    "content blocks strings": odd(lambda b: b["messages"][0].update(content=["hi", "there"])),
    "content none": odd(lambda b: b["messages"][0].update(content=None)),
    "content int": odd(lambda b: b["messages"][1].update(content=7)),
    "tools dict": odd(lambda b: b.update(tools={"name": "a"})),
    "tools strings": odd(lambda b: b.update(tools=["a"])),
    "message-level cache_control": odd(lambda b: b["messages"][0].update(cache_control=FIVE)),
    "top-level cache_control string": odd(lambda b: b.update(cache_control="yes")),
    "client ttl 10m": odd(lambda b: b["tools"][0].update(cache_control={"type": "ephemeral", "ttl": "10m"})),
    "client type persistent": odd(lambda b: b["tools"][0].update(cache_control={"type": "persistent"})),
    "client cache_control on thinking": odd(
        lambda b: b["messages"][1].update(
            content=[
                {"type": "thinking", "thinking": "x", "signature": "s", "cache_control": FIVE},
                {"type": "text", "text": "ok"},
            ]
        )
    ),
    "client cache_control on empty text": odd(
        lambda b: b["messages"][0].update(content=[{"type": "text", "text": "", "cache_control": FIVE}])
    ),
    "not JSON (a set)": odd(lambda b: b["tools"][0].update(input_schema={1, 2})),
    "five client breakpoints": odd(
        lambda b: b["messages"][-1].update(content=[{"type": "text", "text": "q", "cache_control": FIVE}] * 5)
    ),
}


def test_the_control_body_does_get_breakpoints() -> None:
    assert place_breakpoints(big_body(), SONNET, five).added == ("tools", "system", "history")


@pytest.mark.parametrize("name", ODD_BODIES)
def test_odd_bodies_pass_through_untouched(name: str) -> None:
    body = ODD_BODIES[name]
    before = copy.deepcopy(body)
    placed = place_breakpoints(body, SONNET, five)
    assert placed.added == () and placed.ttls == ()
    assert placed.body is body and body == before
    assert count_client_breakpoints(body) == placed.client_breakpoints >= 0


def test_empty_body_does_not_raise() -> None:
    placed = place_breakpoints({}, SONNET, five)
    assert placed == Placement({}, (), (), 0)


@pytest.mark.parametrize(
    "body",
    [
        big_body(),
        layered_body(),
        mark(layered_body(), "tool0", "sys0"),
        {**big_body(), "cache_control": HOUR},
    ],
)
def test_input_is_never_mutated(body: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    placed = place_breakpoints(body, SONNET, ttls(history="1h"))
    assert placed.added  # something was written ...
    assert body == before  # ... to a copy
    assert placed.body != before


# --- cost: measure only what could matter -----------------------------------------------------------


def test_small_requests_are_never_tokenized(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def spy(model: str, value: Any) -> int:
        calls.append(value)
        return 0

    monkeypatch.setattr(tokens, "count_text", spy)
    monkeypatch.setattr(tokens, "count_content_anthropic", spy)
    body = {
        "tools": [{"name": "a", "input_schema": {"type": "object"}}],
        "system": "Be helpful. " * 50,
        "messages": conversation("hi " * 100, "ok", "and?"),
    }
    assert place_breakpoints(body, SONNET, five).added == ()
    assert calls == []


def test_history_is_not_measured_without_a_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[Any] = []
    real = tokens.count_content_anthropic

    def spy(model: str, content: Any) -> int:
        counted.append(content)
        count: int = real(model, content)
        return count

    monkeypatch.setattr(tokens, "count_content_anthropic", spy)
    body = mark(layered_body(), "tool0", "sys0", "msg0")  # one slot left: the system prompt takes it
    body["tools"] = [with_control(tool("a", 50)), tool("b", 50)]  # under the minimum alone
    assert place_breakpoints(body, SONNET, five).added == ("system",)
    assert counted == [body["system"]]  # the system prompt was counted, no message was


@pytest.mark.parametrize(
    "content",
    [
        "plain ascii " * 20,
        "日本語のテキスト" * 20,
        "emoji 🎉🎉🎉 " * 10,
        [{"type": "text", "text": "café " * 30}],
        [{"type": "thinking", "thinking": "思考 " * 30, "signature": "s"}],
        [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}],
        [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc " * 50}}],
        [{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}],
        [{"type": "tool_use", "id": "t", "name": "lookup", "input": {"query": "ünïcode " * 20}}],
        [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image", "source": {}}]}],
        [{"type": "tool_result", "tool_use_id": "t", "content": "result " * 40}],
        [{"type": "redacted_thinking", "data": "opaque"}],
        [{"type": "search_result", "source": "s", "title": "t", "content": [{"type": "text", "text": "x"}]}],
    ],
)
def test_byte_bound_never_undercounts(content: Any) -> None:
    assert _byte_bound(content) >= tokens.count_content_anthropic(SONNET, content)
