"""What the prefix stage (prompt-cache shaping) holds the event loop for, per request.

    .venv/bin/python bench/prefix_stage_bench.py [--iterations 300]

Each request runs through the real `PrefixStage` with a stand-in upstream that answers at once; the
time from entering the stage to the upstream being called is what a request pays. Cases:

- Anthropic, a 3,000-token system prompt, 6 tools and 6 earlier turns, new query: fingerprint,
  tracker, breakpoints at tools, system and history (token counts memoised after the first request);
- the same with a timestamp in the system prompt, while the feature's hourly scan budget lasts (every
  prefix is new: hashed, scanned for volatile spans, and the system prompt tokenized afresh) and after
  it is spent;
- the timestamp prompt with `relocate_volatile: true` (scan + repair on every request);
- OpenAI, 2,000-token system prompt and tools: fingerprint and `prompt_cache_key`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from anatomy_bench import Text, percentile, tool_definitions

from faregate.call import Attribution, Call, Protocol, Result, Route
from faregate.config import Config
from faregate.pipeline.prefix import PrefixStage
from faregate.prompt_cache.tracker import SCANS_PER_HOUR
from faregate.providers import build_providers

SONNET = "claude-sonnet-4-5"
CONFIG = Config.model_validate(
    {
        "providers": {"openai": {"type": "openai"}, "anthropic": {"type": "anthropic"}},
        "features": {"repair": {"prompt_cache": {"relocate_volatile": True}}},
    }
)


def anthropic_tools(text: Text) -> list[dict[str, Any]]:
    return [
        {
            "name": t["function"]["name"],
            "description": t["function"]["description"],
            "input_schema": t["function"]["parameters"],
        }
        for t in tool_definitions(text, n=6)
    ]


def anthropic_bodies(text: Text, n: int, stamped: bool) -> list[dict[str, Any]]:
    system = text.take(3000)
    tools = anthropic_tools(text)
    turns: list[dict[str, Any]] = []
    for _ in range(6):
        turns += [
            {"role": "user", "content": text.take(75)},
            {"role": "assistant", "content": text.take(500)},
        ]
    bodies = []
    for i in range(n):
        head = (
            f"Current time: 2026-11-26T{8 + i // 3600 % 10:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z\n"
            if stamped
            else ""
        )
        bodies.append(
            {
                "model": SONNET,
                "max_tokens": 500,
                "system": head + system,
                "tools": tools,
                "messages": [*turns, {"role": "user", "content": text.take(100)}],
            }
        )
    return bodies


def openai_bodies(text: Text, n: int) -> list[dict[str, Any]]:
    system = {"role": "system", "content": text.take(2000)}
    tools = tool_definitions(text, n=6)
    return [
        {"model": "gpt-4o", "tools": tools, "messages": [system, {"role": "user", "content": text.take(100)}]}
        for _ in range(n)
    ]


async def held(
    stage: PrefixStage, protocol: Protocol, feature: str, bodies: list[dict[str, Any]]
) -> list[float]:
    out: list[float] = []
    route = Route("anthropic", SONNET) if protocol == "anthropic" else Route("openai", "gpt-4o")
    for body in bodies:
        call = Call(
            "bench", protocol, body, b"", route.model, False, {}, Attribution(feature=feature), route=route
        )
        entered = time.perf_counter()
        passed_on = entered

        async def upstream(c: Call) -> Result:
            nonlocal passed_on
            passed_on = time.perf_counter()
            return Result(status=200, headers={})

        await stage(call, upstream)
        out.append((passed_on - entered) * 1e6)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=300)
    n = parser.parse_args().iterations
    text = Text(SONNET)
    stage = PrefixStage(CONFIG.features, build_providers(CONFIG))
    stable = anthropic_bodies(text, n + 20, stamped=False)
    stamped = anthropic_bodies(text, n + SCANS_PER_HOUR, stamped=True)
    repaired = anthropic_bodies(text, n + 20, stamped=True)
    chat = openai_bodies(text, n + 20)
    await held(stage, "anthropic", "warm", stable[:20])  # token counts memoised, as in production
    await held(stage, "openai", "warm", chat[:20])
    await held(stage, "anthropic", "repair", repaired[:20])
    cases = [
        ("anthropic, stable 3k system, breakpoints", await held(stage, "anthropic", "stable", stable[20:])),
        (
            "anthropic, timestamp, scanned (budget)",
            await held(stage, "anthropic", "stamped", stamped[:SCANS_PER_HOUR]),
        ),
        (
            "anthropic, timestamp, budget spent",
            await held(stage, "anthropic", "stamped", stamped[SCANS_PER_HOUR:]),
        ),
        ("anthropic, timestamp, relocate_volatile", await held(stage, "anthropic", "repair", repaired[20:])),
        ("openai, 2k system + tools, cache key", await held(stage, "openai", "chat", chat[20:])),
    ]
    print(f"{'case':44} {'n':>5} {'p50 µs':>8} {'p99 µs':>8}")
    for label, times in cases:
        print(f"{label:44} {len(times):5} {percentile(times, 0.5):8.0f} {percentile(times, 0.99):8.0f}")


if __name__ == "__main__":
    asyncio.run(main())
