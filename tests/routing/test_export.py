"""Shadow checks → routing-outcome rows (`faregate router export`), without a gateway.

The end-to-end loop (route, shadow, export, train) is in tests/server/test_routing.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from faregate.routing.data import read_rows
from faregate.routing.export import outcome_rows


def check(
    prompt_text: str | None, *, protocol: str = "openai", agreed: bool = True, **extra: Any
) -> dict[str, Any]:
    return {
        "request_id": extra.pop("request_id", "r1"),
        "feature": "support",
        "protocol": protocol,
        "prompt_text": prompt_text,
        "model": "mini",
        "tier": "small",
        "cost_nusd": 1_000,
        "frontier_model": "big",
        "frontier_cost_nusd": 16_000,
        "agreed": agreed,
        **extra,
    }


def body(messages: list[dict[str, Any]], **extra: Any) -> str:
    return orjson.dumps({"model": "auto", "messages": messages, **extra}).decode()


def test_each_protocols_last_user_turn_becomes_the_prompt(tmp_path: Path) -> None:
    openai = body([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reset my PIN?"}])
    anthropic = body(
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": [{"type": "text", "text": "Prove that 17 is prime."}]},
        ],
        system="You are a tutor.",
    )
    rows, summary = outcome_rows(
        [check(openai), check(anthropic, protocol="anthropic", agreed=False, request_id="r2")]
    )
    assert [r["prompt"] for r in rows] == ["Reset my PIN?", "Prove that 17 is prime."]
    assert rows[0]["scores"] == {"mini": 1.0, "big": 1.0} and rows[1]["scores"] == {"mini": 0.0, "big": 1.0}
    assert rows[0]["costs"] == {"mini": 1e-6, "big": 1.6e-5} and rows[0]["category"] == "support"
    assert (summary.rows, summary.agreed, summary.tiers_option()) == (2, 1, "small=mini,frontier=big")
    out = tmp_path / "rows.jsonl"
    out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    parsed = read_rows([out])  # what `faregate router train` reads
    assert [(r.prompt, r.scores) for r in parsed] == [(r["prompt"], r["scores"]) for r in rows]


def test_checks_without_a_prompt_or_user_text_are_counted_not_guessed() -> None:
    tool_only = body([{"role": "tool", "content": "42", "tool_call_id": "c1"}])
    rows, summary = outcome_rows([check(None), check("not json"), check("[1, 2]"), check(tool_only)])
    assert rows == []
    assert (summary.skipped_no_prompt, summary.skipped_no_query) == (3, 1)
    assert summary.as_dict()["rows"] == 0 and summary.tiers_option() is None


def test_tiers_are_not_suggested_when_a_tier_saw_two_models() -> None:
    prompt = body([{"role": "user", "content": "Hi"}])
    _, summary = outcome_rows([check(prompt), check(prompt, model="mini-2", request_id="r2")])
    assert summary.tiers_option() is None
    assert {(m["tier"], m["model"], m["rows"]) for m in summary.as_dict()["models"]} == {
        ("small", "mini", 1),
        ("small", "mini-2", 1),
        ("frontier", "big", 2),
    }
