"""The prefix stage on its own: what it forwards, what it records, with a controllable clock."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from faregate.call import Attribution, Call, Result, Route
from faregate.config import Config
from faregate.pipeline.prefix import EXTENDED_CACHE_TTL_BETA, HEADER, PrefixStage
from faregate.providers import build_providers
from faregate.tokens import count_text

RULE = "Always answer with the order number first, then the status, then the next step for the customer. "
SYSTEM = RULE * 80  # ~1,600 tokens: over Sonnet's 1,024-token minimum
CONFIG = Config.model_validate(
    {
        "providers": {
            "openai": {"type": "openai"},
            "anthropic": {"type": "anthropic"},
            "local": {"type": "openai-compatible", "base_url": "http://127.0.0.1:9/v1"},
        },
        "features": {
            "raw": {"prompt_cache": {"enabled": False}},
            "fixed": {"prompt_cache": {"ttl": "1h"}},
            "repair": {"prompt_cache": {"relocate_volatile": True}},
        },
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_002_800.0

    def __call__(self) -> float:
        return self.now


def stage(clock: Clock | None = None) -> PrefixStage:
    return PrefixStage(CONFIG.features, build_providers(CONFIG), clock=clock or Clock())


def anthropic_call(system: str = SYSTEM, feature: str = "support", question: str = "Where is it?") -> Call:
    body = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": system,
        "messages": [
            {"role": "user", "content": "Order 1234 please"},
            {"role": "assistant", "content": "Looking it up."},
            {"role": "user", "content": question},
        ],
    }
    return make_call("anthropic", body, feature, Route("anthropic", "claude-sonnet-4-5"))


def openai_call(body: dict[str, Any], provider: str = "openai", feature: str = "support") -> Call:
    return make_call("openai", body, feature, Route(provider, "gpt-4o"))


def make_call(protocol: Any, body: dict[str, Any], feature: str, route: Route) -> Call:
    return Call(
        request_id="r1",
        protocol=protocol,
        body=body,
        raw_body=b"",
        model_requested=route.model,
        stream=False,
        headers={},
        attribution=Attribution(feature=feature, template="v2"),
        route=route,
    )


def run(prefix: PrefixStage, call: Call) -> tuple[dict[str, Any], Result]:
    forwarded: list[dict[str, Any]] = []

    async def upstream(c: Call) -> Result:
        forwarded.append(c.body)
        return Result(status=200, headers={})

    result = asyncio.run(prefix(call, upstream))
    return forwarded[0], result


def cache_controls(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = [
        b["cache_control"] for b in body.get("system", []) if isinstance(b, dict) and "cache_control" in b
    ]
    for message in body["messages"]:
        if isinstance(message["content"], list):
            found += [b["cache_control"] for b in message["content"] if "cache_control" in b]
    return found


def test_anthropic_breakpoints_forwarded_and_recorded_without_touching_the_client_body() -> None:
    assert count_text("claude-sonnet-4-5", SYSTEM) > 1024
    call = anthropic_call()
    sent = copy.deepcopy(call.body)
    client_body = call.body
    body, result = run(stage(), call)
    assert client_body == sent  # replaced, never edited in place
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][1]["content"][-1]["cache_control"] == {"type": "ephemeral"}  # end of history
    assert result.headers[HEADER] == "breakpoints=system,history; ttl=5m,5m"
    assert call.prefix is not None and call.prefix.enabled_caching
    assert call.prefix.actions == result.headers[HEADER]


def test_a_short_prompt_gets_no_breakpoint_and_no_header() -> None:
    call = anthropic_call(system="Be brief.")
    body, result = run(stage(), call)
    assert cache_controls(body) == [] and HEADER not in result.headers
    assert call.prefix is not None and not call.prefix.enabled_caching and call.prefix.actions is None


def test_ttl_turns_to_one_hour_when_requests_come_ten_minutes_apart() -> None:
    clock = Clock()
    prefix = stage(clock)
    ttls = []
    for _ in range(4):
        body, _ = run(prefix, anthropic_call())
        ttls.append([c.get("ttl", "5m") for c in cache_controls(body)])
        clock.now += 600
    assert ttls[0] == ["5m", "5m"] and ttls[-1] == ["1h", "1h"]


def test_a_one_hour_breakpoint_asks_for_the_extended_ttl_beta_alongside_the_clients() -> None:
    call = anthropic_call(feature="fixed")
    run(stage(), call)
    assert call.betas == [EXTENDED_CACHE_TTL_BETA]
    call.headers = {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    anthropic = build_providers(CONFIG)["anthropic"]
    assert anthropic.request_headers(call)["anthropic-beta"] == (
        "interleaved-thinking-2025-05-14,extended-cache-ttl-2025-04-11"
    )
    call.headers = {"anthropic-beta": "extended-cache-ttl-2025-04-11"}
    assert anthropic.request_headers(call)["anthropic-beta"] == "extended-cache-ttl-2025-04-11"
    five_minutes = anthropic_call()
    run(stage(), five_minutes)
    assert five_minutes.betas == [] and "anthropic-beta" not in anthropic.request_headers(five_minutes)


def test_a_feature_can_fix_the_ttl_or_opt_out() -> None:
    body, _ = run(stage(), anthropic_call(feature="fixed"))
    assert [c.get("ttl") for c in cache_controls(body)] == ["1h", "1h"]
    call = anthropic_call(feature="raw")
    original = call.body
    body, result = run(stage(), call)
    assert body is original and HEADER not in result.headers
    assert call.prefix is not None and call.prefix.prefix_hash  # still tracked


def test_openai_gets_a_prompt_cache_key_unless_it_has_one_or_the_upstream_is_compatible() -> None:
    messages = [{"role": "system", "content": "You are a helpful agent."}, {"role": "user", "content": "hi"}]
    body, result = run(stage(), openai_call({"model": "gpt-4o", "messages": messages}))
    assert body["prompt_cache_key"].startswith("fg-") and result.headers[HEADER] == "key"
    again, _ = run(
        stage(),
        openai_call({"model": "gpt-4o", "messages": [*messages[:1], {"role": "user", "content": "yo"}]}),
    )
    assert again["prompt_cache_key"] == body["prompt_cache_key"]  # same feature, template and prefix
    own, result = run(
        stage(), openai_call({"model": "gpt-4o", "messages": messages, "prompt_cache_key": "mine"})
    )
    assert own["prompt_cache_key"] == "mine" and HEADER not in result.headers
    local, _ = run(stage(), openai_call({"model": "gpt-4o", "messages": messages}, provider="local"))
    assert "prompt_cache_key" not in local
    bare, _ = run(stage(), openai_call({"model": "gpt-4o", "messages": messages[1:]}))
    assert "prompt_cache_key" not in bare  # no prefix to share


def test_findings_are_recorded_as_kinds_and_places_without_the_text() -> None:
    call = anthropic_call(system="Current time: 2026-11-26T08:00:00Z. " + SYSTEM)
    run(stage(), call)
    assert call.prefix is not None and call.prefix.findings is not None
    assert call.prefix.findings.startswith("timestamp@system")
    assert "2026" not in call.prefix.findings


def test_tools_in_another_order_are_a_finding() -> None:
    prefix = stage()
    tools = [{"name": n, "description": f"tool {n}", "input_schema": {"type": "object"}} for n in "abc"]
    first, second = anthropic_call(), anthropic_call()
    first.body["tools"], second.body["tools"] = tools, tools[::-1]
    run(prefix, first)
    run(prefix, second)
    assert second.prefix is not None and second.prefix.findings is not None
    assert "tool_order@tools" in second.prefix.findings.split(";")


def test_relocation_makes_the_forwarded_system_prompt_identical_across_timestamps() -> None:
    prefix = stage()
    bodies = []
    for minute in ("08:00:00", "08:07:31"):
        call = anthropic_call(system=f"Current time: 2026-11-26T{minute}Z. " + SYSTEM, feature="repair")
        body, result = run(prefix, call)
        bodies.append(body)
        assert "relocated=timestamp" in result.headers[HEADER]
    assert bodies[0]["system"] == bodies[1]["system"]
    assert "2026-11-26T08:07:31Z" in str(bodies[1]["messages"][-1]["content"])


def test_a_shaping_failure_never_fails_the_request() -> None:
    call = anthropic_call()
    call.body = {"model": "m", "system": object(), "messages": {"not": "a list"}}
    body, result = run(stage(), call)
    assert result.status == 200 and body is call.body


def test_unhashable_roles_and_block_types_are_forwarded_untouched_without_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Hostile JSON (a list where a string belongs) must not reach the log as a shaping failure."""
    call = anthropic_call(feature="repair")
    call.body["messages"][-1]["content"] = [{"type": ["text"], "text": "hi"}]
    anthropic_body, _ = run(stage(), call)
    weird = [{"role": ["system"], "content": "x"}, {"role": "user", "content": [{"type": ["text"]}]}]
    openai_body, _ = run(stage(), openai_call({"model": "gpt-4o", "messages": weird}, feature="repair"))
    assert openai_body["messages"] == weird and anthropic_body["messages"][-1] == call.body["messages"][-1]
    assert "prefix shaping failed" not in caplog.text
