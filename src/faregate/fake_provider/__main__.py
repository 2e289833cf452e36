"""`python -m faregate.fake_provider --port N`: run the fake in the foreground (demos, manual curl,
load tests with `--error-rate` and friends)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from ._common import Faults, Scenario
from ._server import serve


async def _run(
    host: str,
    port: int,
    scenario: Scenario,
    api_key: str | None,
    simulate_prompt_cache: bool,
    faults: Faults,
) -> None:
    fake = await serve(
        host, port, scenario, api_key=api_key, simulate_prompt_cache=simulate_prompt_cache, faults=faults
    )
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
    faults = parser.add_argument_group("fault injection (shares of requests, drawn at random)")
    faults.add_argument("--error-rate", type=float, default=0.0, help="5xx with the provider's error body")
    faults.add_argument("--rate-limit-rate", type=float, default=0.0, help="429 with Retry-After")
    faults.add_argument("--retry-after", type=float, default=Faults.retry_after_s, help="seconds, on 429s")
    faults.add_argument("--timeout-rate", type=float, default=0.0, help="hang --hang seconds, then answer")
    faults.add_argument("--hang", type=float, default=Faults.hang_s)
    faults.add_argument("--disconnect-rate", type=float, default=0.0, help="drop the connection")
    faults.add_argument("--down", action="store_true", help="drop every connection")
    faults.add_argument("--seed", type=int, default=None, help="repeatable faults")
    args = parser.parse_args(argv)
    scenario = Scenario(
        text=args.text,
        prompt_tokens=args.prompt_tokens,
        cached_tokens=args.cached_tokens,
        completion_tokens=args.completion_tokens,
        delay=args.delay,
    )
    try:
        injected = Faults(
            error_rate=args.error_rate,
            rate_limit_rate=args.rate_limit_rate,
            retry_after_s=args.retry_after,
            timeout_rate=args.timeout_rate,
            hang_s=args.hang,
            disconnect_rate=args.disconnect_rate,
            down=args.down,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args.host, args.port, scenario, args.api_key, args.simulate_prompt_cache, injected))


if __name__ == "__main__":
    main()
