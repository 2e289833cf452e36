"""Cache keys: the same question in the same context shares keys; anything that changes the answer
does not; requests a cache must never answer say why.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from faregate.cache.keys import RequestKeys, normalise_query, request_keys
from faregate.call import Protocol

SYSTEM = "You are a helpful banking assistant."


def _openai(question: Any = "How do I freeze my card?", **params: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        **params,
    }


def _anthropic(question: Any = "How do I freeze my card?", **params: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 1024,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": question}],
        **params,
    }


def _keys(body: dict[str, Any], protocol: Protocol = "openai", **scope: str) -> RequestKeys:
    where = {"tenant": "t1", "feature": "support", "model": body["model"]} | scope
    return request_keys(protocol, body, **where)


def test_shape_of_the_keys() -> None:
    keys = _keys(_openai())
    assert keys.eligible and keys.reason is None
    assert keys.query == "How do I freeze my card?"
    assert len(keys.scope) == len(keys.exact_key) == 32  # BLAKE2b-128, hex
    int(keys.scope, 16), int(keys.exact_key, 16)
    assert keys.scope != keys.exact_key


def test_same_question_same_keys_whatever_the_delivery() -> None:
    base = _keys(_openai())
    delivered = _openai(
        "  How do I\tfreeze   my card?\n",
        stream=True,
        stream_options={"include_usage": True},
        user="u-123",
        metadata={"faregate_feature": "support", "ticket": "42"},
        store=True,
        service_tier="auto",
        prompt_cache_key="support-v1",
        faregate_debug=True,
    )
    keys = _keys(delivered)
    assert (keys.scope, keys.exact_key, keys.eligible) == (base.scope, base.exact_key, True)
    assert keys.query == "How do I\tfreeze   my card?"  # stripped only: what the client wrote


def test_unicode_nfc_in_the_exact_key() -> None:
    composed, decomposed = "Café opening hours?", "Cafe\u0301 opening hours?"
    assert normalise_query(decomposed) == composed
    assert _keys(_openai(composed)).exact_key == _keys(_openai(decomposed)).exact_key


def test_case_is_kept_in_the_exact_key() -> None:
    lower, upper = _keys(_openai("is polish hard to learn?")), _keys(_openai("is Polish hard to learn?"))
    assert lower.scope == upper.scope
    assert lower.exact_key != upper.exact_key


def test_text_parts_are_joined_into_the_query() -> None:
    parts = [{"type": "text", "text": "How do I"}, {"type": "text", "text": "freeze my card?"}]
    keys = _keys(_openai(parts))
    assert keys.eligible
    assert keys.query == "How do I\nfreeze my card?"
    assert keys.exact_key == _keys(_openai("How do I freeze my card?")).exact_key


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.2},
        {"top_p": 0.5},
        {"max_tokens": 50},
        {"max_completion_tokens": 50},
        {"stop": ["\n"]},
        {"seed": 7},
        {"presence_penalty": 0.5},
        {"frequency_penalty": 0.5},
        {"logit_bias": {"1234": -100}},
        {"reasoning_effort": "high"},
        {"response_format": {"type": "json_object"}},
        {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]},
        {"tool_choice": "none"},
        {"some_future_parameter": 1},  # unknown: assumed to change the answer
    ],
)
def test_parameters_that_change_the_answer_change_the_scope(change: dict[str, Any]) -> None:
    base, changed = _keys(_openai()), _keys(_openai(**change))
    assert changed.eligible
    assert changed.scope != base.scope
    assert changed.exact_key != base.exact_key


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.2},
        {"top_k": 5},
        {"max_tokens": 50},
        {"stop_sequences": ["END"]},
        {"thinking": {"type": "enabled", "budget_tokens": 2048}},
        {"system": "You are a pirate."},
    ],
)
def test_anthropic_parameters_change_the_scope(change: dict[str, Any]) -> None:
    base = _keys(_anthropic(), "anthropic")
    assert _keys(_anthropic(**change), "anthropic").scope != base.scope


def test_scope_separates_tenants_features_protocols_and_models() -> None:
    body = _openai()
    base = _keys(body)
    assert _keys(body, tenant="t2").scope != base.scope
    assert _keys(body, feature="sales").scope != base.scope
    assert _keys(body, model="gpt-4o-mini").scope != base.scope
    assert request_keys("anthropic", body, tenant="t1", feature="support", model="gpt-4o").scope != base.scope


def test_system_prompt_changes_the_scope() -> None:
    body = _openai()
    body["messages"][0]["content"] = "You are a terse assistant."
    assert _keys(body).scope != _keys(_openai()).scope


def test_integral_floats_hash_like_integers() -> None:
    assert _keys(_openai(temperature=1)).scope == _keys(_openai(temperature=1.0)).scope


def test_follow_ups_only_meet_the_same_preceding_turns() -> None:
    def conversation(first: str) -> dict[str, Any]:
        return {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": first},
                {"role": "assistant", "content": "Here are three options: A, B and C."},
                {"role": "user", "content": "What about the second one?"},
            ],
        }

    cards, loans = _keys(conversation("Which cards do you offer?")), _keys(conversation("Which loans?"))
    assert cards.eligible and loans.eligible
    assert cards.query == loans.query == "What about the second one?"
    assert cards.scope != loans.scope and cards.exact_key != loans.exact_key
    assert _keys(conversation("Which cards do you offer?")) == cards


def test_cache_control_is_ignored_everywhere() -> None:
    plain = _anthropic(
        [{"type": "text", "text": "How do I freeze my card?"}],
        tools=[{"name": "lookup", "input_schema": {"type": "object"}}],
    )
    marked = copy.deepcopy(plain)
    marked["system"] = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    marked["tools"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    marked["messages"][0]["content"][0]["cache_control"] = {"type": "ephemeral"}
    assert _keys(marked, "anthropic") == _keys(plain, "anthropic")
    # a system prompt written as one text block is the same prompt as the string
    assert _keys(plain, "anthropic") == _keys(_anthropic(tools=plain["tools"]), "anthropic")


def test_cache_control_in_preceding_turns_is_ignored() -> None:
    def body(marker: bool) -> dict[str, Any]:
        block: dict[str, Any] = {"type": "text", "text": "Long earlier question."}
        if marker:
            block["cache_control"] = {"type": "ephemeral"}
        return _anthropic(
            messages=[
                {"role": "user", "content": [block]},
                {"role": "assistant", "content": "An answer."},
                {"role": "user", "content": "And then?"},
            ]
        )

    assert _keys(body(True), "anthropic") == _keys(body(False), "anthropic")


@pytest.mark.parametrize(
    ("protocol", "body", "reason"),
    [
        ("openai", _openai(n=2), "n > 1"),
        ("openai", _openai(logprobs=True), "logprobs requested"),
        ("openai", _openai(tool_choice="required"), "tool call required by tool_choice"),
        (
            "openai",
            _openai(tool_choice={"type": "function", "function": {"name": "lookup"}}),
            "tool call required by tool_choice",
        ),
        ("openai", _openai(modalities=["text", "audio"]), "audio output requested"),
        ("openai", _openai(web_search_options={}), "web search (live results)"),
        ("openai", _openai(""), "no user text"),
        ("openai", _openai("   \n"), "no user text"),
        ("openai", _openai(None), "no user text"),
        (
            "openai",
            _openai(
                [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ]
            ),
            "image content",
        ),
        (
            "openai",
            _openai([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]),
            "audio content",
        ),
        (
            "openai",
            {"model": "gpt-4o", "messages": [{"role": "system", "content": SYSTEM}]},
            "no user message",
        ),
        ("openai", {"model": "gpt-4o"}, "no user message"),
        (
            "openai",
            {
                "model": "gpt-4o",
                "messages": [
                    {"role": "user", "content": "Weather in Paris?"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
                ],
            },
            "tool result continuation",
        ),
        (
            "anthropic",
            _anthropic(tool_choice={"type": "any"}, tools=[{"name": "t", "input_schema": {}}]),
            "tool call required by tool_choice",
        ),
        (
            "anthropic",
            _anthropic(
                [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}},
                    {"type": "text", "text": "What is this?"},
                ]
            ),
            "image content",
        ),
        (
            "anthropic",
            _anthropic(
                [
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
                    {"type": "text", "text": "Summarise this."},
                ]
            ),
            "document content",
        ),
        (
            "anthropic",
            _anthropic(
                messages=[
                    {"role": "user", "content": "Weather in Paris?"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}],
                    },
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}],
                    },
                ]
            ),
            "tool result continuation",
        ),
        (
            "anthropic",
            _anthropic(
                messages=[
                    {"role": "user", "content": "Write a haiku."},
                    {"role": "assistant", "content": "Autumn"},  # a prefill
                ]
            ),
            "last message is not a user message",
        ),
    ],
)
def test_ineligible_requests(protocol: Protocol, body: dict[str, Any], reason: str) -> None:
    keys = _keys(body, protocol)
    assert not keys.eligible
    assert keys.reason == reason


def test_eligible_edge_cases() -> None:
    # n = 1 and a hot, seedless temperature: one genuine sample, kept apart by the scope
    assert _keys(_openai(n=1)).eligible
    hot = _keys(_openai(temperature=1.8))
    assert hot.eligible and hot.scope != _keys(_openai()).scope
    # an Anthropic new question after a finished tool exchange: the exchange is context
    body = _anthropic(
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}],
            },
            {"role": "assistant", "content": "It is 18C and sunny."},
            {"role": "user", "content": "And in Rome?"},
        ]
    )
    keys = _keys(body, "anthropic")
    assert keys.eligible and keys.query == "And in Rome?"


def test_bodies_no_encoder_takes_are_ineligible_not_errors() -> None:
    body = _openai(logit_bias={1: 5, "2": 5})  # mixed key types: neither orjson nor json sorts them
    keys = _keys(body)
    assert not keys.eligible and keys.reason == "request cannot be hashed"
    huge = _keys(_openai(seed=2**80))  # beyond orjson's integers: the standard library writes it
    assert huge.eligible and huge.scope != _keys(_openai(seed=2**79)).scope


def test_the_client_body_is_not_modified() -> None:
    body = _anthropic([{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}], stream=True)
    before = copy.deepcopy(body)
    _keys(body, "anthropic")
    assert body == before
