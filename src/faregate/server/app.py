"""The ASGI application: routes onto the `Gateway`, built by `create_app(config)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from faregate import __version__
from faregate.config import Config
from faregate.errors import FareGateError
from faregate.protocols import ANTHROPIC_MESSAGES, OPENAI_CHAT
from faregate.server.admin import admin_routes
from faregate.server.gateway import Gateway
from faregate.server.openapi import openapi_route


def create_app(config: Config) -> Starlette:
    gateway = Gateway(config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    async def chat_completions(request: Request) -> Response:
        return await gateway.handle(request, OPENAI_CHAT)

    async def messages(request: Request) -> Response:
        return await gateway.handle(request, ANTHROPIC_MESSAGES)

    async def models(request: Request) -> Response:
        """OpenAI's list format by default; Anthropic's when the client is an Anthropic SDK. With
        virtual keys, only for a valid key, and only the models its allow-list names."""
        anthropic = "anthropic-version" in request.headers
        entries = gateway.models()
        if gateway.auth is not None:
            try:
                allowed = await gateway.auth.allowed_models(request.headers)
            except FareGateError as exc:
                protocol = ANTHROPIC_MESSAGES if anthropic else OPENAI_CHAT
                return Response(protocol.render_error(exc), exc.status, media_type="application/json")
            if allowed is not None:
                entries = [m for m in entries if m["id"] in allowed]
        if anthropic:
            data = [
                {
                    "type": "model",
                    "id": m["id"],
                    "display_name": m["id"],
                    "created_at": "1970-01-01T00:00:00Z",
                }
                for m in entries
            ]
            first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
            return JSONResponse({"data": data, "has_more": False, "first_id": first, "last_id": last})
        data = [{"id": m["id"], "object": "model", "created": 0, "owned_by": m["provider"]} for m in entries]
        return JSONResponse({"object": "list", "data": data})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    app = Starlette(
        routes=[
            Route(OPENAI_CHAT.path, chat_completions, methods=["POST"]),
            Route(ANTHROPIC_MESSAGES.path, messages, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            openapi_route(),
            *admin_routes(gateway, config),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
