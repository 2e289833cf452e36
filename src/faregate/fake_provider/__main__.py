"""`python -m faregate.fake_provider --port N`: run the fake in the foreground (demos, manual curl)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from ._common import Scenario
from ._server import serve


async def _run(
    host: str, port: int, scenario: Scenario, api_key: str | None, simulate_prompt_cache: bool
) -> None:
    fake = await serve(host, port, scenario, api_key=api_key, simulate_prompt_cache=simulate_prompt_cache)
    print(f"fake provider listening on {fake.url} (OpenAI and Anthropic under /v1)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop_async()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m faregate.fake_provider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="require this key (default: accept any)")
    parser.add_argument("--text", default=Scenario.text)
    parser.add_argument("--prompt-tokens", type=int, default=Scenario.prompt_tokens)
    parser.add_argument("--cached-tokens", type=int, default=Scenario.cached_tokens)
    parser.add_argument("--completion-tokens", type=int, default=Scenario.completion_tokens)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each response")
    parser.add_argument(
        "--simulate-prompt-cache",
        action="store_true",
        help="derive prompt and cache token counts from the requests (provider prompt caching)",
    )
    args = parser.parse_args(argv)
    scenario = Scenario(
        text=args.text,
        prompt_tokens=args.prompt_tokens,
        cached_tokens=args.cached_tokens,
        completion_tokens=args.completion_tokens,
        delay=args.delay,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args.host, args.port, scenario, args.api_key, args.simulate_prompt_cache))


if __name__ == "__main__":
    main()
