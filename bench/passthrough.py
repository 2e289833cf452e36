"""The floor: a bare Starlette + uvicorn (uvloop, httptools) + aiohttp pass-through, no FareGate.

    python bench/passthrough.py --upstream http://127.0.0.1:PORT/v1 --port N

It does what any Python proxy on this stack must do (read the body, POST it upstream over a
keep-alive pool, send the answer back) and nothing else: no parsing, no pricing, no ledger. The
gap between it and FareGate on the same machine is what FareGate's own code costs; the gap between
it and nginx is the price of the stack, whatever the gateway does.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def create_app(upstream: str) -> Starlette:
    url = upstream.rstrip("/") + "/chat/completions"
    session: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal session
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60), skip_auto_headers=("User-Agent",)
        )
        try:
            yield
        finally:
            await session.close()

    async def chat_completions(request: Request) -> Response:
        assert session is not None
        body = await request.body()
        headers = {"content-type": "application/json"}
        if auth := request.headers.get("authorization"):
            headers["authorization"] = auth
        async with session.post(url, data=body, headers=headers) as upstream_response:
            data = await upstream_response.read()
            return Response(
                data,
                status_code=upstream_response.status,
                media_type=upstream_response.headers.get("content-type"),
            )

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
