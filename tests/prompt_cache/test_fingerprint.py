"""Prefix hashes: equal for equal prefixes, different when any prefix part changes, stable across runs."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from faregate.prompt_cache.fingerprint import fingerprint, prompt_cache_key

TOOLS = [{"name": "lookup", "description": "Find an order", "input_schema": {"type": "object"}}]


def anthropic(system: Any = "You are helpful.", first: str = "hi", tools: Any = TOOLS) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "system": system, "messages": [{"role": "user", "content": first}]}
    if tools is not None:
        body["tools"] = tools
    return body


def test_same_prefix_same_hash_whatever_the_question() -> None:
    a = fingerprint("anthropic", anthropic(first="Where is my order?"))
    b = fingerprint("anthropic", anthropic(first="Cancel it"))
    assert a.tools == b.tools and a.system == b.system
    assert a.conversation != b.conversation  # another conversation
    assert a.prefix_hash == b.prefix_hash and len(a.prefix_hash) == 16


def test_each_part_changes_its_hash_and_those_after_it() -> None:
    base = fingerprint("anthropic", anthropic())
    other_system = fingerprint("anthropic", anthropic(system="You are terse."))
    assert other_system.tools == base.tools and other_system.system != base.system
    other_tools = fingerprint("anthropic", anthropic(tools=[{**TOOLS[0], "description": "Find"}]))
    assert other_tools.tools != base.tools and other_tools.system != base.system


def test_openai_system_is_the_leading_system_and_developer_messages() -> None:
    def body(system: str, question: str) -> dict[str, Any]:
        return {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": system},
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": question},
            ],
        }

    a, b = fingerprint("openai", body("S", "q1")), fingerprint("openai", body("S", "q2"))
    assert a.system == b.system and a.conversation != b.conversation
    assert fingerprint("openai", body("T", "q1")).system != a.system
    assert not a.empty_prefix
    assert fingerprint("openai", {"messages": [{"role": "user", "content": "hi"}]}).empty_prefix


def test_hashes_agree_across_processes() -> None:
    """Replicas write prefix hashes to one ledger: Python's salted hash() would split them."""
    code = (
        "from faregate.prompt_cache.fingerprint import fingerprint;"
        "print(fingerprint('anthropic', {'system': 'You are helpful.', 'messages': []}).prefix_hash)"
    )
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout for _ in "ab"
    }
    assert outputs == {
        fingerprint("anthropic", {"system": "You are helpful.", "messages": []}).prefix_hash + "\n"
    }


def test_odd_bodies_do_not_raise() -> None:
    for body in ({}, {"messages": "x"}, {"system": 3, "messages": [1, None]}, {"tools": {"a": {1, 2}}}):
        fingerprint("anthropic", body)
        fingerprint("openai", body)


def test_prompt_cache_key_follows_feature_template_and_prefix() -> None:
    a = fingerprint("anthropic", anthropic())
    b = fingerprint("anthropic", anthropic(system="Other"))
    key = prompt_cache_key("support", "v3", a)
    assert key == prompt_cache_key("support", "v3", a) and key.startswith("fg-") and len(key) <= 64
    assert len({key, prompt_cache_key("support", "v4", a), prompt_cache_key("faq", "v3", a)}) == 3
    assert prompt_cache_key("support", "v3", b) != key
