"""The router stage: send a request to the cheapest model tier the router trusts with it.

A request routes when it asks for model `auto`, or when its feature sets `routing: true` and it
asks for the frontier tier's model (routing may move it down, never up or sideways). The router
(`faregate.routing`) scores the last user turn from its embedding, shared with the semantic cache
when that stage already computed it, and cheap features; the chosen tier's configured model is
resolved like any model name. A tier the router picks that the client's protocol cannot reach
falls back to the frontier.

Production feedback: a configured share of requests routed below the frontier is shadowed: once the
client has its answer, the same request (not streamed) goes to the frontier model; the two answers
are compared by embedding similarity, and the shadow call is settled as a ledger event of its own
(`route_shadow_of`, `route_agreed`), so the routing-error estimate covers every replica.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson

from faregate.cache.embeddings import Embedder
from faregate.cache.precision import ANSWER_AGREEMENT
from faregate.call import Call, Result, Route, RoutingOutcome
from faregate.errors import FareGateError, ModelNotFound
from faregate.history.exchanges import content_text
from faregate.pipeline.background import Background
from faregate.pipeline.base import Next
from faregate.pipeline.route import ModelCatalogue
from faregate.pipeline.settle import error_result
from faregate.routing.artifact import Router

log = logging.getLogger("faregate.routing")
HEADER = "x-faregate-route"
AUTO = "auto"


class RouterStage:
    def __init__(
        self,
        router: Router,
        tiers: Mapping[Any, str],
        routed_features: set[str],
        catalogue: ModelCatalogue,
        embedder: Callable[[], Embedder | None],
        executor: ThreadPoolExecutor,
        *,
        shadow_fraction: float = 0.0,
        shadow: Callable[[Call], Any] | None = None,
        answer_embedder: Callable[[], Embedder | None] | None = None,
        settle: Callable[[Call, Result], None] | None = None,
        new_request_id: Callable[[], str] | None = None,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.router = router
        self.tiers = dict(tiers)
        self.routed_features = routed_features
        self.catalogue = catalogue
        self.embedder = embedder
        self.executor = executor
        self.shadow_fraction = shadow_fraction
        self.shadow_upstream = shadow
        # Answers are compared with the semantic cache's model (float32), whose agreement threshold
        # (ANSWER_AGREEMENT) was set on its vectors.
        self.answer_embedder = answer_embedder or embedder
        self.settle = settle
        self.new_request_id = new_request_id
        self.sample = sample
        self._background = Background(log, "shadow call")

    async def __call__(self, call: Call, next: Next) -> Result:
        if not self._routes(call):
            return await next(call)
        text, history_len = query_and_history(call.protocol, call.body)
        embedding = call.embedding
        if embedding is None:
            embedder = self.embedder()
            if embedder is None:
                raise FareGateError("the router's embedding model is not loaded")
            embedding = await asyncio.get_running_loop().run_in_executor(
                self.executor, embedder.embed_one, text
            )
            call.embedding = embedding
        decision = self.router.route(embedding, text, call.attribution.feature, history_len)
        tier, fallback = decision.tier, decision.fallback
        route = self._resolve(call, tier)
        if route is None:  # a tier this protocol cannot reach, or not configured: the frontier
            tier, fallback = "frontier", True
            route = self._resolve(call, tier)
            if route is None:
                raise ModelNotFound(
                    f"routing.tiers.frontier ({self.tiers['frontier']}) cannot serve this request"
                )
        frontier = None if tier == "frontier" else self._resolve(call, "frontier")
        call.route = route
        call.routing = RoutingOutcome(tier, round(decision.confidence, 4), fallback, frontier=frontier)
        result = await next(call)
        result.headers[HEADER] = f"{tier}/{self.tiers[tier]}"
        if tier != "frontier" and result.status == 200 and self._shadowed():
            if result.stream is None:
                self._background.spawn(self._shadow(call, result))
            else:
                result.on_complete.append(lambda done: self._background.spawn(self._shadow(call, done)))
        return result

    def _routes(self, call: Call) -> bool:
        if call.model_requested == AUTO:
            return True
        return (
            call.attribution.feature in self.routed_features
            and call.model_requested == self.tiers["frontier"]
        )

    def _resolve(self, call: Call, tier: str) -> Route | None:
        model = self.tiers.get(tier)
        if model is None:
            return None
        try:
            return self.catalogue.resolve(call.protocol, model)
        except ModelNotFound:
            return None

    def _shadowed(self) -> bool:
        return (
            self.shadow_fraction > 0
            and self.shadow_upstream is not None
            and self.sample() < self.shadow_fraction
        )

    # --- shadow calls -----------------------------------------------------------------------------

    async def _shadow(self, call: Call, routed: Result) -> None:
        """Ask the frontier too, off the client's path; compare the answers; settle the shadow call."""
        if routed.error_kind is not None or self.settle is None or self.shadow_upstream is None:
            return
        route = self._resolve(call, "frontier")
        if route is None:
            return
        body = {k: v for k, v in call.body.items() if k not in ("stream", "stream_options")}
        shadow = dataclasses.replace(
            call,
            request_id=self.new_request_id() if self.new_request_id else call.request_id + "-shadow",
            body=body,
            raw_body=orjson.dumps(body),
            stream=False,
            route=route,
            routing=RoutingOutcome("frontier", shadow_of=call.request_id),
            attribution=dataclasses.replace(call.attribution),
            cache=None,
            prefix=None,
            anatomy=None,
            client_wants_stream_usage=False,
            betas=list(call.betas),
        )
        try:
            result = await self.shadow_upstream(shadow)
        except FareGateError as exc:
            result = error_result(shadow, exc)
        answer, fresh = "".join(routed.output_text).strip(), "".join(result.output_text).strip()
        embedder = self.answer_embedder()
        if result.status == 200 and answer and fresh and embedder is not None:
            vectors = await asyncio.get_running_loop().run_in_executor(
                self.executor, embedder.embed, [answer, fresh]
            )
            assert shadow.routing is not None
            shadow.routing.agreed = float(np.dot(vectors[0], vectors[1])) >= ANSWER_AGREEMENT
        self.settle(shadow, result)

    async def drain(self) -> None:
        await self._background.drain()


def query_and_history(protocol: str, body: Mapping[str, Any]) -> tuple[str, int]:
    """The last user turn's text and how many user turns came before it.

    Anthropic tool results travel in user messages; a user message made only of them is not a
    user turn (the same rule as the prompt anatomy's).
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        return "", 0
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") == "user" and _is_turn(protocol, m)]
    if not turns:
        return "", 0
    return content_text(turns[-1].get("content")), len(turns) - 1


def _is_turn(protocol: str, message: Mapping[str, Any]) -> bool:
    content = message.get("content")
    if protocol != "anthropic" or not isinstance(content, list):
        return True
    return any(not (isinstance(b, dict) and b.get("type") == "tool_result") for b in content)
