"""The admin API under /faregate/v1/: JSON for the numbers and actions the CLI and dashboard offer.

Protected by `server.admin_key_env` (a bearer key read from the environment at start-up); without
one, only clients on the gateway's own machine may call it, so a gateway bound to loopback is safe by
default and one bound elsewhere does not expose invalidation to the network.

With `auth.virtual_keys` on, a FareGate virtual key may also READ the endpoints that can answer for
one team, and then only about its own team (its key's team, forced on the query):
`GET /faregate/v1/attribution` (the rollups' `team` filter) and `GET /faregate/v1/budgets` (its
team's budgets and its team's keys' budgets). Every other endpoint, and every write (DELETE cache,
POST feedback and events), answers a virtual key 403: they cannot be scoped to a team.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from faregate.config import Config
from faregate.keys import credential
from faregate.server.api import BadRequest, dashboard_api_routes, unix_seconds
from faregate.server.auth import INVALID, VIEWER, viewer
from faregate.server.dashboard import dashboard_routes
from faregate.server.gateway import Gateway
from faregate.telemetry import metrics_route

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
Handler = Callable[[Request], Awaitable[Response]]


def admin_routes(gateway: Gateway, config: Config) -> list[Route]:
    key_env = config.server.admin_key_env
    admin_key = os.environ.get(key_env) if key_env else None

    def guarded(handler: Handler, *, team_view: bool = False) -> Handler:
        """Admin key (or loopback without one) for everything; a virtual key for `team_view` GETs."""

        async def run(request: Request) -> Response:
            token = _bearer(request)
            is_admin = admin_key is not None and hmac.compare_digest(token.encode(), admin_key.encode())
            if not is_admin and gateway.auth is not None and credential.parse(token) is not None:
                record = await gateway.auth.verify(token)
                if record is None:
                    return _error(401, INVALID)
                if not team_view or request.method != "GET":
                    return _error(
                        403,
                        "a virtual key may only read its team's numbers (GET /faregate/v1/attribution, "
                        "GET /faregate/v1/budgets); this endpoint needs the admin key (server.admin_key_env)",
                    )
                request.scope[VIEWER] = record
                return await handler(request)
            refusal = None if is_admin else _refuse(request, admin_key)
            return refusal if refusal is not None else await handler(request)

        return run

    async def cache_stats(request: Request) -> Response:
        return _json({"features": await gateway.cache_stats()})

    async def cache_clear(request: Request) -> Response:
        query = request.query_params
        deleted = await gateway.cache_clear(
            feature=query.get("feature"), template=query.get("template"), tenant=query.get("tenant")
        )
        return _json({"deleted": deleted})

    async def prompt_cache(request: Request) -> Response:
        return _json({"features": await gateway.prompt_cache_report()})

    async def history(request: Request) -> Response:
        since = request.query_params.get("since")
        try:
            start = unix_seconds(since, "since") if since is not None else None
        except BadRequest as exc:
            return _error(400, str(exc))
        return _json(await gateway.history_report(start))

    async def routing(request: Request) -> Response:
        since = request.query_params.get("since")
        try:
            start = unix_seconds(since, "since") if since is not None else None
        except BadRequest as exc:
            return _error(400, str(exc))
        return _json({"features": await gateway.routing_report(start)})

    async def feedback(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, 'the body must be JSON: {"request_id": "...", "rating": 0..1}')
        problem = _feedback_problem(body)
        if problem is not None:
            return _error(400, problem)
        await gateway.record_feedback(body["request_id"], float(body["rating"]))
        return _json({"request_id": body["request_id"], "rating": float(body["rating"])})

    async def budgets(request: Request) -> Response:
        usage = await gateway.budget_usage()
        key = viewer(request)
        if key is not None and gateway.auth is not None:  # its team's budgets and its team's keys'
            team_keys = {k.id for k in await asyncio.to_thread(gateway.auth.store.list, key.team)}
            usage = [
                b
                for b in usage
                if (b["scope"] == "team" and b["name"] == key.team)
                or (b["scope"] == "key" and b["name"] in team_keys)
            ]
        return _json({"budgets": usage})

    routes = [
        Route("/faregate/v1/budgets", guarded(budgets, team_view=True), methods=["GET"]),
        Route("/faregate/v1/cache/stats", guarded(cache_stats), methods=["GET"]),
        Route("/faregate/v1/routing", guarded(routing), methods=["GET"]),
        Route("/faregate/v1/feedback", guarded(feedback), methods=["POST"]),
        Route("/faregate/v1/history", guarded(history), methods=["GET"]),
        Route("/faregate/v1/cache", guarded(cache_clear), methods=["DELETE"]),
        Route("/faregate/v1/prompt-cache", guarded(prompt_cache), methods=["GET"]),
    ]
    routes += dashboard_api_routes(gateway, guarded)
    routes += dashboard_routes(guarded)
    if gateway.metrics is not None:
        # Guarded like the admin API (bearer key, else loopback): the metrics name features and spend.
        # Prometheus sends the key with `authorization: {credentials: ...}` in its scrape config.
        scrape = metrics_route(gateway.metrics)
        routes.append(Route(scrape.path, guarded(scrape.endpoint), methods=["GET"]))
    return routes


def _feedback_problem(body: Any) -> str | None:
    """Why a feedback body is unusable, or None. A rating is a number from 0 (bad) to 1 (good)."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    request_id, rating = body.get("request_id"), body.get("rating")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 64 or not request_id.isalnum():
        return "request_id: the X-FareGate-Request-Id of the rated response"
    if isinstance(rating, bool) or not isinstance(rating, int | float) or not 0 <= rating <= 1:
        return "rating: a number from 0 (bad answer) to 1 (good answer)"
    return None


def _bearer(request: Request) -> str:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def _refuse(request: Request, admin_key: str | None) -> Response | None:
    if admin_key is None:
        host = request.client.host if request.client else ""
        if host in LOOPBACK:
            return None
        return _error(
            403, "the admin API is only open to this machine; set server.admin_key_env to use it remotely"
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), admin_key.encode()):
        return None
    return _error(401, "the admin API needs Authorization: Bearer <admin key>")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"type": "admin_error", "message": message}}, status_code=status)


def _json(payload: dict[str, Any]) -> Response:
    return JSONResponse(_plain(payload))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
