"""What the anatomy stage adds to a request on the gateway path, measured on the event loop.

    .venv/bin/python bench/anatomy_stage_bench.py [--iterations 300] [--upstream-ms 2]

A ~10,000-token OpenAI request (2,000-token system prompt, tools, 6 earlier turns) whose earlier
parts were seen before, with a new ~100-token query, and the same with a new ~3,000-token retrieved
context. Each request runs through the real `AnatomyStage`, then a stand-in upstream that waits
`--upstream-ms` (a provider answers in hundreds of ms; 2 ms is a pessimistic floor), then waits for
the measurement as settle does. What the request pays is the time the stage holds the event loop
before passing the call on, plus the time settle still waits for the count after the upstream has
answered; both are timed directly (subtracting two timer-driven runs measures the timer instead).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from anatomy_bench import Text, history, percentile, tool_definitions

from faregate.call import Call, Result, Route
from faregate.pipeline.anatomy import AnatomyStage

MODEL = "gpt-4o"


def bodies(iterations: int) -> tuple[list[bytes], list[bytes]]:
    text = Text(MODEL)
    system = {"role": "system", "content": text.take(2000)}
    prefix = {
        "model": MODEL,
        "tools": tool_definitions(text, n=6),
        "messages": [system, *history(text, 6, 400)],
    }

    def body(last_turn: str) -> bytes:
        return orjson.dumps(
            {**prefix, "messages": [*prefix["messages"], {"role": "user", "content": last_turn}]}
        )

    queries = [text.take(100) for _ in range(iterations)]
    new_query = [body(q) for q in queries]
    new_context = [body(f"{q}\n\n<context>\n{text.take(3000)}\n</context>") for q in queries]
    return new_query, new_context


async def run(
    raw_bodies: list[bytes], stage: AnatomyStage, upstream_s: float
) -> tuple[list[float], list[float]]:
    held: list[float] = []
    waited: list[float] = []

    for raw in raw_bodies:
        call = Call("bench", "openai", orjson.loads(raw), raw, MODEL, False, {}, route=Route("openai", MODEL))
        entered = time.perf_counter()
        passed_on = entered

        async def upstream(c: Call) -> Result:
            nonlocal passed_on
            passed_on = time.perf_counter()
            await asyncio.sleep(upstream_s)
            return Result(status=200, headers={})

        await stage(call, upstream)
        answered = time.perf_counter()
        if call.anatomy is not None and not call.anatomy.done():
            await asyncio.wait([call.anatomy])  # as settle does
        held.append(passed_on - entered)
        waited.append(time.perf_counter() - answered)
    return held, waited


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--upstream-ms", type=float, default=2.0)
    args = parser.parse_args()
    upstream_s = args.upstream_ms / 1000
    stage = AnatomyStage({}, ThreadPoolExecutor(max_workers=2))
    new_query, new_context = bodies(args.iterations)
    await run(new_query[:20], stage, upstream_s)  # warm: system prompt, tools and history memoised
    print(f"upstream stand-in: {args.upstream_ms} ms; {args.iterations} requests per case; µs")
    print(f"{'case':40} {'loop held p50':>14} {'settle wait p50':>16} {'added p50':>10} {'added p99':>10}")
    cases = (
        ("warm prefix, new 100-token query", new_query),
        ("warm prefix, new 3k-token context", new_context),
    )
    for label, raws in cases:
        held, waited = await run(raws, stage, upstream_s)
        added = [(h + w) * 1e6 for h, w in zip(held, waited, strict=True)]
        print(
            f"{label:40} {percentile([h * 1e6 for h in held], 0.5):14.0f} "
            f"{percentile([w * 1e6 for w in waited], 0.5):16.0f} "
            f"{percentile(added, 0.5):10.0f} {percentile(added, 0.99):10.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
