"""Anatomy: where a request's input tokens go, summing to what tokens.py counts for the same body."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from faregate import anatomy, tokens
from faregate.anatomy import COMPONENTS, CONTEXT_TAGS, Anatomy, compile_patterns, dissect
from faregate.tokens import (
    ANTHROPIC_IMAGE_TOKENS,
    ANTHROPIC_TOOL_SYSTEM_PROMPT_TOKENS,
    OPENAI_IMAGE_LOW_DETAIL_TOKENS,
    OPENAI_IMAGE_TOKENS,
    PER_MESSAGE_TOKENS,
    PER_NAME_TOKENS,
    REPLY_PRIMING_TOKENS,
    count_messages_anthropic,
    count_messages_openai,
    count_text,
)

GPT = "gpt-4o"
CLAUDE = "claude-sonnet-4-5"


def n(model: str, text: str) -> int:
    return count_text(model, text)


def js(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def framing(model: str, roles: list[str]) -> int:
    return REPLY_PRIMING_TOKENS + sum(PER_MESSAGE_TOKENS + n(model, role) for role in roles)


# --- OpenAI ------------------------------------------------------------------------------------------

SYSTEM = "You are the support assistant for Acme billing. Answer from the documents; say when unsure."
DEVELOPER = "Cite document ids in square brackets."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_kb",
            "description": "Search the knowledge base",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]
SCHEMA = {"name": "answer", "schema": {"type": "object", "properties": {"text": {"type": "string"}}}}


def test_openai_components_from_their_pieces() -> None:
    span = "<context>\nInvoices are issued on the 1st. Refunds take 5 days.\n</context>"
    turn = f"When do refunds arrive?\n{span}\nAnswer briefly."
    body = {
        "model": GPT,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "developer", "content": DEVELOPER},
            {"role": "user", "content": "Hi, I was charged twice."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "function": {"name": "search_kb", "arguments": '{"q":"double"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "Double charges are reversed within 24h."},
            {"role": "assistant", "content": "It will be reversed within a day."},
            {"role": "user", "content": turn},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c2", "function": {"name": "search_kb", "arguments": '{"q":"refund"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c2", "content": "Refunds: 5 business days to the card."},
        ],
        "tools": TOOLS,
        "response_format": {"type": "json_schema", "json_schema": SCHEMA},
    }
    view = dissect("openai", GPT, body)
    a = view.anatomy

    assert a.system == n(GPT, SYSTEM) + n(GPT, DEVELOPER)
    assert a.tools == n(GPT, js(TOOLS)) + n(GPT, js(SCHEMA))
    assert a.history == (
        n(GPT, "Hi, I was charged twice.")
        + n(GPT, "search_kb")
        + n(GPT, '{"q":"double"}')
        + n(GPT, "Double charges are reversed within 24h.")
        + n(GPT, "It will be reversed within a day.")
        + n(GPT, "search_kb")  # the agent loop's tool call after the last user turn
        + n(GPT, '{"q":"refund"}')
    )
    assert a.context == n(GPT, span) + n(GPT, "Refunds: 5 business days to the card.")
    assert a.query == n(GPT, turn) - n(GPT, span)
    roles = ["system", "developer", "user", "assistant", "tool", "assistant", "user", "assistant", "tool"]
    assert a.overhead == framing(GPT, roles)
    assert a.total() == count_messages_openai(GPT, body)

    assert view.system_text == f"{SYSTEM}\n{DEVELOPER}"
    assert view.tools_json == f"{js(TOOLS)}\n{js(SCHEMA)}"
    assert view.query_text == "When do refunds arrive?\n\nAnswer briefly."
    assert view.user_turns == 2


def test_openai_first_question_is_all_query() -> None:
    body = {
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "  How do I pay?  "}]
    }
    view = dissect("openai", GPT, body)
    assert view.anatomy == Anatomy(
        system=n(GPT, SYSTEM),
        query=n(GPT, "  How do I pay?  "),
        overhead=framing(GPT, ["system", "user"]),
    )
    assert view.query_text == "How do I pay?"
    assert view.user_turns == 1
    assert view.tools_json == ""


def test_openai_multimodal_parts_count_where_their_message_is() -> None:
    body = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "https://x/a.png"}},
                ],
            },
            {"role": "assistant", "content": "A cat."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "And here? <document>Cats sleep 16h a day.</document>"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA", "detail": "low"}},
                    {"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}},
                    {"type": "refusal", "refusal": "no"},
                    "not a part",
                ],
            },
        ]
    }
    a = dissect("openai", GPT, body).anatomy
    span = "<document>Cats sleep 16h a day.</document>"
    assert a.system == n(GPT, SYSTEM)
    assert a.history == n(GPT, "What is in this picture?") + OPENAI_IMAGE_TOKENS + n(GPT, "A cat.")
    assert a.context == n(GPT, span)
    assert a.query == (n(GPT, f"And here? {span}") - n(GPT, span)) + OPENAI_IMAGE_LOW_DETAIL_TOKENS + n(
        GPT, "no"
    )
    assert a.total() == count_messages_openai(GPT, body)


def test_openai_legacy_functions_and_names() -> None:
    functions = [{"name": "lookup", "parameters": {"type": "object"}}]
    call = {"name": "lookup", "arguments": "{}"}
    body = {
        "messages": [
            {"role": "user", "name": "ada", "content": "find it"},
            {"role": "assistant", "content": None, "function_call": call},
            {"role": "function", "name": "lookup", "content": "the record"},
        ],
        "functions": functions,
    }
    view = dissect("openai", GPT, body)
    a = view.anatomy
    assert a.tools == n(GPT, js(functions))
    assert a.query == n(GPT, "find it") + n(GPT, "ada")
    assert a.history == n(GPT, js(call))
    assert a.context == n(GPT, "the record") + n(GPT, "lookup")  # a legacy function result after the turn
    assert a.overhead == framing(GPT, ["user", "assistant", "function"]) + 2 * PER_NAME_TOKENS
    assert a.total() == count_messages_openai(GPT, body)
    assert view.tools_json == js(functions)


def test_without_a_user_message_everything_is_history() -> None:
    body = {"messages": [{"role": "assistant", "content": "Hello!"}, {"role": "tool", "content": "x"}]}
    view = dissect("openai", GPT, body)
    assert view.anatomy.history == n(GPT, "Hello!") + n(GPT, "x")
    assert (view.anatomy.query, view.anatomy.context, view.user_turns) == (0, 0, 0)
    assert view.anatomy.total() == count_messages_openai(GPT, body)


# --- context spans in the last user turn --------------------------------------------------------------


@pytest.mark.parametrize("tag", CONTEXT_TAGS)
@pytest.mark.parametrize("model", [GPT, "gpt-4"])
def test_each_context_tag(tag: str, model: str) -> None:
    span = f'<{tag} source="wiki">\nThe Eiffel Tower is 330 m tall.\n</{tag}>'
    turn = f"How tall is it? {span} Answer in feet."
    view = dissect("openai", model, {"messages": [{"role": "user", "content": turn}]})
    assert view.anatomy.context == n(model, span)
    assert view.anatomy.query == n(model, turn) - n(model, span)
    assert view.query_text == "How tall is it?  Answer in feet."


def test_tags_are_matched_whatever_their_case() -> None:
    span = "<Context>facts</CONTEXT>"
    view = dissect("openai", GPT, {"messages": [{"role": "user", "content": f"q {span}"}]})
    assert view.anatomy.context == n(GPT, span)


def test_nested_elements_count_once() -> None:
    span = (
        "<documents>\n<document index=1>\nAlpha text.\n</document>\n"
        "<document index=2>\n<context>Beta text.</context>\n</document>\n</documents>"
    )
    turn = f"Summarise:\n{span}\nThanks"
    a = dissect("openai", GPT, {"messages": [{"role": "user", "content": turn}]}).anatomy
    assert a.context == n(GPT, span)
    assert a.query == n(GPT, turn) - n(GPT, span)


def test_unclosed_stray_and_self_closing_tags_are_not_context() -> None:
    for turn in (
        "What does <context> mean in XML?",
        "A stray </document> closing tag",
        "An empty <document/> element",
        "<retrieved>never closed",
        "mismatched <context>text</document>",
    ):
        a = dissect("openai", GPT, {"messages": [{"role": "user", "content": turn}]}).anatomy
        assert (a.context, a.query) == (0, n(GPT, turn)), turn


def test_an_element_closed_inside_an_unclosed_one_is_context() -> None:
    inner = "<document>kept</document>"
    turn = f"<documents> open {inner} never closed"
    a = dissect("openai", GPT, {"messages": [{"role": "user", "content": turn}]}).anatomy
    assert a.context == n(GPT, inner)
    assert a.query == n(GPT, turn) - n(GPT, inner)


def test_feature_patterns_mark_context() -> None:
    patterns = compile_patterns([r"\[ref:[^\]]*\]", r"(?s)BEGIN EXCERPT.*?END EXCERPT"])
    refs = ["[ref: invoice 12 was paid on May 3]", "[ref: plan is Pro]"]
    excerpt = "BEGIN EXCERPT\nRefunds take 5 days.\nEND EXCERPT"
    span = "<context>plus [ref: overlapping] tagged</context>"  # a match inside a tag counts once
    turn = f"Is {refs[0]} right, given {refs[1]}?\n{excerpt}\n{span}\nThanks"
    view = dissect("openai", GPT, {"messages": [{"role": "user", "content": turn}]}, patterns)
    pieces = [*refs, excerpt, span]
    assert view.anatomy.context == sum(n(GPT, p) for p in pieces)
    assert view.anatomy.query == n(GPT, turn) - sum(n(GPT, p) for p in pieces)
    assert view.query_text == "Is  right, given ?\n\n\nThanks"
    # without the patterns only the tagged span is context
    plain = dissect("openai", GPT, {"messages": [{"role": "user", "content": turn}]})
    assert plain.anatomy.context == n(GPT, span)


def test_compile_patterns_is_cached_and_rejects_bad_patterns() -> None:
    assert compile_patterns([r"a+", "b"]) is compile_patterns(("a+", "b"))
    with pytest.raises(ValueError, match=r"invalid context pattern '\('"):
        compile_patterns(["("])


def test_a_turn_that_is_all_context_has_no_query() -> None:
    span = "<context>\nonly retrieved text here\n</context>"
    turn = f"{span}\n"  # ">\n" is one token together, two apart: the cut costs the query -1
    a = dissect("openai", GPT, {"messages": [{"role": "user", "content": turn}]}).anatomy
    assert a.context + a.query == n(GPT, turn)
    assert a.query == max(0, n(GPT, turn) - n(GPT, span))  # never negative: the context gives way
    assert a.context == min(n(GPT, span), n(GPT, turn))


# --- Anthropic ---------------------------------------------------------------------------------------


def test_anthropic_components_from_their_pieces() -> None:
    tools = [{"name": "lookup", "description": "Find a record", "input_schema": {"type": "object"}}]
    span = "<search_results>\n1. Plans: Free, Pro, Team.\n</search_results>"
    turn_text = f"{span}\nWhich plan fits a team of 5?"
    body = {
        "system": [{"type": "text", "text": SYSTEM}, {"type": "text", "text": DEVELOPER}],
        "tools": tools,
        "messages": [
            {"role": "user", "content": "Hello"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "old"}]},
            {"role": "assistant", "content": "Found your account."},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t0", "content": "fresh result"},
                    {"type": "text", "text": turn_text},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "..."}},
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "Doc."},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t2", "name": "lookup", "input": {"a": 1}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "content": [
                            {"type": "text", "text": "Team plan: 10 seats."},
                            {"type": "image", "source": {"type": "base64", "data": "..."}},
                        ],
                    }
                ],
            },
        ],
    }
    view = dissect("anthropic", CLAUDE, body)
    a = view.anatomy
    assert a.system == n(CLAUDE, SYSTEM) + n(CLAUDE, DEVELOPER)
    assert a.tools == ANTHROPIC_TOOL_SYSTEM_PROMPT_TOKENS + n(CLAUDE, js(tools))
    assert a.history == (
        n(CLAUDE, "Hello")
        + n(CLAUDE, "lookup")
        + n(CLAUDE, "{}")
        + n(CLAUDE, "old")
        + n(CLAUDE, "Found your account.")
        + n(CLAUDE, "lookup")
        + n(CLAUDE, '{"a":1}')
    )
    assert a.context == (
        n(CLAUDE, "fresh result")
        + n(CLAUDE, span)
        + n(CLAUDE, "Doc.")
        + n(CLAUDE, "Team plan: 10 seats.")
        + ANTHROPIC_IMAGE_TOKENS
    )
    assert a.query == n(CLAUDE, turn_text) - n(CLAUDE, span) + ANTHROPIC_IMAGE_TOKENS
    assert a.overhead == REPLY_PRIMING_TOKENS + 7 * PER_MESSAGE_TOKENS
    assert a.total() == count_messages_anthropic(CLAUDE, body)
    assert view.system_text == f"{SYSTEM}\n{DEVELOPER}"
    assert view.tools_json == js(tools)
    assert view.query_text == "Which plan fits a team of 5?"
    assert view.user_turns == 2  # tool-result-only user messages are not turns


def test_anthropic_string_system_and_tool_results_after_the_turn() -> None:
    body = {
        "system": SYSTEM,
        "messages": [
            {"role": "user", "content": "Look up order 7"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "orders", "input": {}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "shipped"}]},
        ],
    }
    view = dissect("anthropic", CLAUDE, body)
    assert view.anatomy == Anatomy(
        system=n(CLAUDE, SYSTEM),
        history=n(CLAUDE, "orders") + n(CLAUDE, "{}"),
        context=n(CLAUDE, "shipped"),
        query=n(CLAUDE, "Look up order 7"),
        overhead=REPLY_PRIMING_TOKENS + 3 * PER_MESSAGE_TOKENS,
    )
    assert view.anatomy.total() == count_messages_anthropic(CLAUDE, body)
    assert (view.system_text, view.user_turns, view.query_text) == (SYSTEM, 1, "Look up order 7")


def test_anthropic_with_only_tool_results_has_no_turn() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "r"}]}]}
    view = dissect("anthropic", CLAUDE, body)
    assert (view.anatomy.history, view.anatomy.context, view.user_turns) == (n(CLAUDE, "r"), 0, 0)


# --- the sum, on awkward bodies ----------------------------------------------------------------------

WEIRD_OPENAI: list[Any] = [
    {},
    {"messages": None},
    {"messages": "not a list"},
    {"messages": 5},
    {"messages": {"role": "user"}},
    {"messages": [None, 3, "x", [], {"role": None}, {}]},
    {"messages": [{"role": "user", "content": None}]},
    {"messages": [{"role": "user", "content": 42}]},
    {"messages": [{"role": "user", "content": {"text": "a dict"}}]},
    {
        "messages": [
            {"role": "user", "content": [None, 1, {"type": "mystery", "text": "t"}, {"type": "text"}]}
        ]
    },
    {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
    {"messages": [{"role": "assistant", "tool_calls": 7}]},
    {"messages": [{"role": "assistant", "tool_calls": [None, {"function": "x"}, {"function": {}}]}]},
    {"messages": [{"role": "assistant", "function_call": "not a mapping"}, {"role": ["odd"], "name": 3}]},
    {"messages": [{"role": "user", "content": "<context><context></context>"}], "tools": "a string"},
    {
        "messages": [{"role": "tool", "content": [{"type": "image_url"}]}],
        "response_format": {"json_schema": 1},
    },
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "not a mapping"}]}]},
    {"messages": [{"role": "user", "content": "x" * 5000 + "<document>" + "y" * 3000 + "</document>"}]},
    {
        "messages": [
            {"role": "user", "content": "a" * 70 + " " + "\n" * 9 + "<context>" * 40 + "</context>" * 40}
        ]
    },
    {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "<context>" + "\u00e9\u0301" * 99}]}
        ]
    },
    {"messages": [{"role": "user", "content": "<context>\ud800</context> lone surrogate"}]},
]
WEIRD_ANTHROPIC: list[Any] = [
    {},
    {"system": None, "messages": [None, {"role": "user"}, {"role": "user", "content": 5}]},
    {"system": {"odd": True}, "messages": [{"role": "user", "content": [1, None, {"type": "weird"}]}]},
    {
        "system": [None, {"type": "image"}],
        "messages": [{"role": "assistant", "content": [{"type": "tool_use"}]}],
    },
    {"messages": [{"role": "user", "content": [{"type": "text", "text": 12}, {"type": "tool_result"}]}]},
    {
        "messages": [
            {"role": "user", "content": []},
            {"role": "user", "content": [{"type": "redacted_thinking"}]},
        ]
    },
    {"messages": [{"role": "user", "content": [{"type": "document", "source": "x"}, {"type": "thinking"}]}]},
    {"messages": [{"role": "user", "content": "<search_results>only</search_results>"}], "tools": [{}]},
]


@pytest.mark.parametrize("body", WEIRD_OPENAI)
def test_weird_openai_bodies_never_raise_and_still_sum(body: Any) -> None:
    view = dissect("openai", GPT, body)
    assert all(v >= 0 for v in view.anatomy.as_dict().values())
    try:
        expected = count_messages_openai(GPT, body)
    except (TypeError, AttributeError):
        return  # tokens.py cannot count it either; the anatomy still answered
    assert view.anatomy.total() == expected


@pytest.mark.parametrize("body", WEIRD_ANTHROPIC)
def test_weird_anthropic_bodies_never_raise_and_still_sum(body: Any) -> None:
    view = dissect("anthropic", CLAUDE, body)
    assert all(v >= 0 for v in view.anatomy.as_dict().values())
    assert view.anatomy.total() == count_messages_anthropic(CLAUDE, body)


def test_values_json_cannot_encode_do_not_raise() -> None:
    huge = json.loads(
        '{"messages": [{"role": "user", "content": {"n": 123456789012345678901234567890}}],'
        ' "tools": [{"big": 123456789012345678901234567890}]}'
    )
    deep: Any = "leaf"
    for _ in range(300):  # deeper than orjson writes
        deep = {"k": deep}
    for body in (huge, {"messages": [{"role": "user", "content": deep}], "tools": deep}):
        view = dissect("openai", GPT, body)
        assert view.anatomy.query > 0
        assert view.anatomy.tools > 0
    blocks = {
        "messages": [
            {"role": "user", "content": [{"type": "tool_use", "input": huge}, {"type": "text", "text": "hi"}]}
        ]
    }
    assert dissect("anthropic", CLAUDE, blocks).anatomy.query > n(CLAUDE, "hi")


def test_a_body_that_is_not_a_mapping_and_an_unknown_protocol() -> None:
    assert dissect("openai", GPT, ["not", "a", "body"]).anatomy == Anatomy()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="protocol"):
        dissect("gemini", GPT, {})  # type: ignore[arg-type]


# --- exactness of cutting text at context spans ------------------------------------------------------

ALPHABET = [*"abXY éÉ日本ñ\u0301'\"/\\<>()[]{}.,;:!?-_=+*&%$#@~`|0189\n\r\t²½", "  ", "\n\n", "'s", "'ll"]


@pytest.mark.parametrize("model", [GPT, "gpt-4"])
def test_safe_cuts_split_text_exactly(model: str) -> None:
    """The claim `anatomy` rests on: at a safe cut, a text counts exactly as its two halves."""
    rnd = random.Random(11)
    encode = tokens.encoding_for_model(model).encode_ordinary
    checked = 0
    for _ in range(2500):
        text = "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(2, 24)))
        whole = len(encode(text))
        for p in range(1, len(text)):
            if anatomy._safe(text, p):
                checked += 1
                assert len(encode(text[:p])) + len(encode(text[p:])) == whole, (text, p)
    assert checked > 5000


@pytest.mark.parametrize("model", [GPT, "gpt-4"])
def test_turns_with_random_spans_sum_exactly(model: str) -> None:
    fragments = [
        *(f"<{t}>" for t in CONTEXT_TAGS),
        *(f"</{t}>" for t in CONTEXT_TAGS),
        *ALPHABET,
        "word",
        "REF-7",
        ">",
        "<",
        "\n",
        " ",
        "1234",
    ]
    patterns = compile_patterns([r"REF-\d+"])
    rnd = random.Random(5)
    for _ in range(2000):
        turn = "".join(rnd.choice(fragments) for _ in range(rnd.randint(1, 30)))
        a = dissect("openai", model, {"messages": [{"role": "user", "content": turn}]}, patterns).anatomy
        assert a.context + a.query == len(tokens.encoding_for_model(model).encode_ordinary(turn)), turn
        assert a.context >= 0 and a.query >= 0


def test_long_turns_cut_far_from_safe_positions_still_sum() -> None:
    blob = "x" * 3000  # no safe cut for thousands of characters either side of the tags
    turn = f"{blob}<context>{blob}</context>{blob}"
    a = dissect("openai", GPT, {"messages": [{"role": "user", "content": turn}]}).anatomy
    assert a.context + a.query == n(GPT, turn)


# --- memoisation -------------------------------------------------------------------------------------


def test_seen_text_is_not_encoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    encoding = tokens.encoding_for_model(GPT)
    encoded: list[str] = []
    original = encoding.encode_ordinary

    def recording(text: str) -> list[int]:
        encoded.append(text)
        return original(text)

    monkeypatch.setattr(encoding, "encode_ordinary", recording)
    tokens._memo.clear()
    system = "You answer questions about the handbook, citing sections. " * 20
    documents = [
        f"Section {i}. " + "The policy applies to every employee on every site. " * 12 for i in range(3)
    ]

    def retrieved(*ids: int) -> str:
        return (
            "<documents>\n"
            + "".join(f"<document>\n{documents[i]}\n</document>\n" for i in ids)
            + "</documents>"
        )

    first_turn = f"{retrieved(0, 1)}\nWhat is the leave policy?"
    first = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": first_turn}]}
    dissect("openai", GPT, first)
    encoded.clear()

    # the next turn: system and the first turn (now history) seen, documents 0 and 1 retrieved again
    second = {
        "messages": [
            {"role": "system", "content": "".join(list(system))},  # equal text, a new string
            {"role": "user", "content": "".join(list(first_turn))},
            {"role": "assistant", "content": "Twenty days."},
            {"role": "user", "content": f"{retrieved(1, 2, 0)}\nAnd sick leave?"},
        ]
    }
    view = dissect("openai", GPT, second)
    assert view.anatomy.total() == count_messages_openai(GPT, second)
    new_text = "".join(t for t in encoded if len(t) > 12)  # roles and tags aside
    assert system not in new_text
    assert documents[0] not in new_text and documents[1] not in new_text
    assert documents[2] in new_text  # the one new document


# --- Anatomy -----------------------------------------------------------------------------------------


def test_total_and_as_dict() -> None:
    a = Anatomy(system=1, tools=2, history=3, context=4, query=5, overhead=6)
    assert a.total() == 21
    assert list(a.as_dict()) == list(COMPONENTS)
    assert a.as_dict() == {"system": 1, "tools": 2, "history": 3, "context": 4, "query": 5, "overhead": 6}


def test_scaled_to_sums_exactly_and_keeps_proportions() -> None:
    rnd = random.Random(2)
    for _ in range(500):
        a = Anatomy(*(rnd.choice([0, 0, rnd.randint(1, 50), rnd.randint(1, 20_000)]) for _ in COMPONENTS))
        if a.total() == 0:
            continue
        target = rnd.randint(0, 60_000)
        scaled = a.scaled_to(target)
        assert scaled.total() == target
        for name in COMPONENTS:
            exact = a.as_dict()[name] * target / a.total()
            assert abs(scaled.as_dict()[name] - exact) < 1
            if a.as_dict()[name] == 0:
                assert scaled.as_dict()[name] == 0


def test_scaled_to_edges() -> None:
    assert Anatomy(system=1, query=1).scaled_to(3) == Anatomy(system=2, query=1)  # ties: COMPONENTS order
    assert Anatomy(system=5).scaled_to(0) == Anatomy()
    assert Anatomy(system=5).scaled_to(-4) == Anatomy()
    assert Anatomy().scaled_to(7) == Anatomy(overhead=7)
    a = Anatomy(system=100, tools=50, history=0, context=25, query=25, overhead=0)
    assert a.scaled_to(a.total()) == a
    assert a.scaled_to(400) == Anatomy(system=200, tools=100, context=50, query=50)


def test_request_view_texts_are_plain_strings() -> None:
    view = dissect("openai", GPT, {"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS})
    assert orjson.loads(view.tools_json) == TOOLS
    assert view.query_text == "hi"
