"""The dashboard's JSON API under /faregate/v1/: every number the dashboard shows, from the rollups.

Each GET takes `since` and `until` (unix seconds; the last 7 days by default, `until` exclusive and
both widened to whole hours) and, where a series is drawn, `bucket=hour|day` (hours when the range
is two days or less, else days). Money is in US dollars as floats, times are unix seconds.

    GET  /faregate/v1/overview          totals, savings by strategy, cache and tier mixes, a series
    GET  /faregate/v1/attribution       ?by=feature|team|template|cohort|model|user and drill-down
                                        filters feature=, team=, template=, cohort=, model=
    GET  /faregate/v1/unit-economics    cost per completed task and per daily active user
    GET  /faregate/v1/templates         ?feature=: template versions, their quality, regressions
    GET  /faregate/v1/anatomy           input tokens by prompt component per feature
    POST /faregate/v1/events            {"task_id", "feature", "outcome": "success"|"failure", "score"?}

The routes are wrapped in the admin API's guard (`guarded`) by whoever mounts them. A virtual key
(`auth.virtual_keys`) may read `attribution` only, with its team's filter forced: the other
endpoints aggregate over every team and answer it 403 (see `faregate.server.admin`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from faregate.ledger.rollups import ATTRIBUTION_BY, BUCKETS, DIMENSIONS, OUTCOMES
from faregate.server.auth import Guard, viewer
from faregate.server.gateway import Gateway

Handler = Callable[[Request], Awaitable[Response]]
DEFAULT_RANGE_S = 7 * 86400
MAX_TASK_ID = 256
MAX_FEATURE = 256


class BadRequest(ValueError):
    """A query parameter or body the API cannot use; answered with 400 and this message."""


class Forbidden(Exception):
    """A virtual key asked about another team; answered with 403 and this message."""


def dashboard_api_routes(gateway: Gateway, guarded: Guard) -> list[Route]:
    store = gateway.store

    def endpoint(fn: Callable[[Request], Awaitable[dict[str, Any]]], *, team_view: bool = False) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return JSONResponse(await fn(request))
            except BadRequest as exc:
                return _error(400, str(exc))
            except Forbidden as exc:
                return _error(403, str(exc))

        return guarded(run, team_view=team_view)

    async def overview(request: Request) -> dict[str, Any]:
        since, until = _range(request)
        bucket = _bucket(request)
        return await _call(store.overview, since, until, bucket)

    async def attribution(request: Request) -> dict[str, Any]:
        since, until = _range(request)
        by = request.query_params.get("by", "feature")
        if by not in ATTRIBUTION_BY:
            raise BadRequest(f"by must be one of {', '.join(ATTRIBUTION_BY)}")
        filters = {k: v for k in DIMENSIONS if (v := request.query_params.get(k))}
        key = viewer(request)  # a virtual key reads its own team, nothing else
        if key is not None and filters.setdefault("team", key.team) != key.team:
            raise Forbidden(f"this API key may only read team {key.team!r}")
        return await _call(store.attribution, by, since, until, filters)

    async def unit_economics(request: Request) -> dict[str, Any]:
        since, until = _range(request)
        return await _call(store.unit_economics, since, until, _bucket(request))

    async def templates(request: Request) -> dict[str, Any]:
        since, until = _range(request)
        feature = request.query_params.get("feature") or None
        threshold = gateway.config.alerts.template_regression
        return await _call(store.templates, since, until, feature, threshold)

    async def anatomy(request: Request) -> dict[str, Any]:
        since, until = _range(request)
        return await _call(store.anatomy, since, until)

    async def task_event(request: Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise BadRequest(
                'the body must be JSON: {"task_id": "...", "feature": "...", "outcome": "success"}'
            ) from None
        task_id, feature, outcome, score = _task_outcome(body)
        ts = time.time()
        await asyncio.to_thread(store.record_task, task_id, feature, outcome, score, ts)
        return {"task_id": task_id, "feature": feature, "outcome": outcome, "score": score, "ts": ts}

    return [
        Route("/faregate/v1/overview", endpoint(overview), methods=["GET"]),
        Route("/faregate/v1/attribution", endpoint(attribution, team_view=True), methods=["GET"]),
        Route("/faregate/v1/unit-economics", endpoint(unit_economics), methods=["GET"]),
        Route("/faregate/v1/templates", endpoint(templates), methods=["GET"]),
        Route("/faregate/v1/anatomy", endpoint(anatomy), methods=["GET"]),
        Route("/faregate/v1/events", endpoint(task_event), methods=["POST"]),
    ]


async def _call(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run a store query off the event loop; a ValueError from it is the caller's mistake."""
    try:
        return await asyncio.to_thread(fn, *args)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _range(request: Request) -> tuple[float, float]:
    query = request.query_params
    until = _seconds(query.get("until"), "until", time.time())
    since = _seconds(query.get("since"), "since", until - DEFAULT_RANGE_S)
    if since >= until:
        raise BadRequest("since must be before until")
    return since, until


MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z: beyond it, SQLite cannot bind the hour


def _seconds(raw: str | None, name: str, default: float) -> float:
    if raw is None or raw == "":
        return default
    return unix_seconds(raw, name)


def unix_seconds(raw: str, name: str) -> float:
    """A query parameter's unix time, refused (400) unless finite and between 1970 and year 9999."""
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a unix timestamp in seconds") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_TIMESTAMP:
        raise BadRequest(f"{name} must be a unix timestamp in seconds, from 0 to {MAX_TIMESTAMP}")
    return value


def _bucket(request: Request) -> str | None:
    bucket = request.query_params.get("bucket") or None
    if bucket is not None and bucket not in BUCKETS:
        raise BadRequest("bucket must be hour or day")
    return bucket


def _task_outcome(body: Any) -> tuple[str, str, str, float | None]:
    """The validated (task_id, feature, outcome, score) of a POST /faregate/v1/events body."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    task_id, feature, outcome, score = (body.get(k) for k in ("task_id", "feature", "outcome", "score"))
    if not isinstance(task_id, str) or not 0 < len(task_id) <= MAX_TASK_ID:
        raise BadRequest(
            f"task_id: the X-FareGate-Task of the task's requests (1 to {MAX_TASK_ID} characters)"
        )
    if not isinstance(feature, str) or not 0 < len(feature) <= MAX_FEATURE:
        raise BadRequest("feature: the feature the task belongs to (a non-empty string)")
    if outcome not in OUTCOMES:
        raise BadRequest('outcome: "success" or "failure"')
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score)
    ):
        raise BadRequest("score: a finite number, or omitted")
    return task_id, feature, str(outcome), None if score is None else float(score)


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": {"type": "admin_error", "message": message}}, status_code=status)
