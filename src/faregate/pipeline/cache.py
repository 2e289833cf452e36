"""The cache stage: answer from the exact-match tier, then the semantic tier, else store the answer.

Off unless the feature configures `semantic_cache`. For an eligible request (see `cache.keys`):

1. exact tier: the normalised request's hash within its scope;
2. semantic tier: the query's embedding (computed once, kept on the call for the router), nearest
   entries in the same scope, the first above the feature's threshold that the guards let through;
3. otherwise the request goes on, and a plain-text answer that ended normally is stored (streams
   when they end) unless the client said `no-store`.

`X-FareGate-Cache: bypass` or `Cache-Control: no-cache` skips the lookup; `no-store` skips storing.
The response says `X-FareGate-Cache: hit | semantic-hit | miss | bypass`. A hit is rendered in the
client's protocol (JSON, or a proper SSE stream) and recorded with zero provider cost; its baseline is
what the stored answer would cost now. A sampled fraction of semantic hits is verified upstream in
the background (`cache.precision`). Store and embedding work runs in a worker thread: SQLite,
PostgreSQL and NumPy's BLAS all release the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import orjson

from faregate.cache.embeddings import Embedder
from faregate.cache.entry import CachedAnswer, CacheEntry
from faregate.cache.guards import refuse
from faregate.cache.keys import RequestKeys, request_keys
from faregate.cache.precision import ANSWER_AGREEMENT, DEFAULT_THRESHOLD, PrecisionTracker
from faregate.cache.replay import answer_from_response, render_json, render_stream
from faregate.cache.store import CacheStore
from faregate.call import CacheOutcome, Call, Result, Usage
from faregate.config import SemanticCacheSettings
from faregate.errors import FareGateError
from faregate.pipeline.background import Background
from faregate.pipeline.base import Next
from faregate.pipeline.identify import tenant_of
from faregate.pipeline.settle import error_result

log = logging.getLogger("faregate.cache")
HEADER = "x-faregate-cache"
NORMAL_STOPS = frozenset({"stop", "end_turn", "stop_sequence"})
CANDIDATES = 4  # nearest entries considered: the first may be refused by a guard
EVICT_EVERY = 64  # stores per feature between LRU evictions
SHARE_EVERY_S = 30.0  # how often a replica adopts the tightenings other replicas stored
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Directive:
    lookup: bool
    store: bool


def directive(headers: Any) -> Directive:
    """The client's say: `X-FareGate-Cache: bypass`, `Cache-Control: no-cache` / `no-store`."""
    ours = (headers.get(HEADER) or "").strip().lower()
    control = {part.strip().lower() for part in (headers.get("cache-control") or "").split(",")}
    lookup = ours != "bypass" and "no-cache" not in control
    return Directive(lookup=lookup, store="no-store" not in control)


class CacheStage:
    def __init__(
        self,
        features: dict[str, SemanticCacheSettings],
        store: CacheStore,
        embedder: Callable[[], Embedder | None],
        executor: ThreadPoolExecutor,
        verify: Callable[[Call, Result], None] | None = None,
        clock: Callable[[], float] = time.time,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.features = features
        self.store = store
        self.embedder = embedder
        self.executor = executor
        self.record_verification = verify
        self.clock = clock
        self.sample = sample
        self.precision = PrecisionTracker()
        self.share_every_s = SHARE_EVERY_S
        self._stores: dict[str, int] = {}
        self._background = Background(log, "cache background work")
        self._adopt_stored()  # a restart keeps what verification learnt (one small read, at start)
        self._adopted_at = self.clock()

    async def __call__(self, call: Call, next: Next) -> Result:
        settings = self.features.get(call.attribution.feature)
        if settings is None:
            return await next(call)
        said = directive(call.headers)
        tenant = tenant_of(call)
        keys = request_keys(
            call.protocol,
            call.body,
            tenant=tenant,
            feature=call.attribution.feature,
            model=call.model_requested,
        )
        if not keys.eligible:
            call.cache = CacheOutcome("miss")
            return _labelled(await next(call), "miss")
        if said.lookup:
            hit = await self._lookup(call, settings, keys, next)
            if hit is not None:
                return hit
        call.cache = CacheOutcome("miss" if said.lookup else "bypass")
        result = await next(call)
        if said.store and result.status == 200:
            self._store_when_done(call, settings, keys, tenant, result)
        return _labelled(result, call.cache.status)

    # --- lookup -----------------------------------------------------------------------------------

    async def _lookup(
        self, call: Call, settings: SemanticCacheSettings, keys: RequestKeys, next: Next
    ) -> Result | None:
        now = self.clock()
        if settings.exact:
            entry = await self._run(self.store.get_exact, keys.scope, keys.exact_key, now)
            if entry is not None:
                return self._answer(call, entry, "hit", None)
        embedder = self.embedder() if settings.semantic else None
        if embedder is None:
            return None
        vector = await self._run(embedder.embed_one, keys.query)
        call.embedding = vector
        if now - self._adopted_at >= self.share_every_s:
            self._adopted_at = now
            self._background.run(self.executor, self._adopt_stored)
        threshold = self.precision.threshold(call.attribution.feature, _configured(settings))
        for entry, similarity in await self._run(self.store.search, keys.scope, vector, CANDIDATES, now):
            if similarity < threshold:
                break
            if settings.guards and (reason := refuse(entry.query, keys.query)) is not None:
                log.debug("semantic hit refused", extra={"request_id": call.request_id, "reason": reason})
                continue
            if settings.verify_fraction and self.sample() < settings.verify_fraction:
                self._background.spawn(self._verify(call, entry, settings, next))
            return self._answer(call, entry, "semantic-hit", similarity)
        return None

    def _answer(self, call: Call, entry: CacheEntry, status: str, similarity: float | None) -> Result:
        answer = entry.answer
        self._background.run(self.executor, self.store.touch, entry.id, self.clock())
        call.cache = CacheOutcome(
            status,
            similarity=similarity,
            answer_model=answer.model,
            answer_usage=Usage(input_tokens=answer.input_tokens, output_tokens=answer.output_tokens),
        )
        headers = {HEADER: status, "content-type": "application/json"}
        result = Result(status=200, headers=headers, usage=Usage(), model_used=answer.model, upstream_ms=0.0)
        result.output_text.append(answer.text)
        if call.stream:
            headers["content-type"] = "text/event-stream"
            events = render_stream(answer, call.model_requested, call.client_wants_stream_usage)
            result.stream = _replayed(events, result)
        else:
            result.body = render_json(answer, call.model_requested)
        return result

    # --- storing ----------------------------------------------------------------------------------

    def _store_when_done(
        self, call: Call, settings: SemanticCacheSettings, keys: RequestKeys, tenant: str, result: Result
    ) -> None:
        if result.stream is None:
            try:
                body = orjson.loads(result.body)
            except orjson.JSONDecodeError:
                return
            answer = answer_from_response(call.protocol, body, 0) if isinstance(body, dict) else None
            if answer is not None:
                self._background.run(self.executor, self._put, call, settings, keys, tenant, answer)
            return

        def streamed(done: Result) -> None:
            if done.error_kind is not None or done.stop_reason not in NORMAL_STOPS or done.usage is None:
                return
            text = "".join(done.output_text)
            if not text:
                return
            answer = CachedAnswer(
                protocol=call.protocol,
                model=done.model_used or (call.route.model if call.route else call.model_requested),
                text=text,
                stop_reason=done.stop_reason or "stop",
                input_tokens=done.usage.input_tokens,
                output_tokens=done.usage.output_tokens,
                cost_nusd=0,
            )
            self._background.run(self.executor, self._put, call, settings, keys, tenant, answer)

        result.on_complete.append(streamed)

    def _put(
        self,
        call: Call,
        settings: SemanticCacheSettings,
        keys: RequestKeys,
        tenant: str,
        answer: CachedAnswer,
    ) -> None:
        """In a worker thread: embed (unless the lookup already did) and store, then evict now and then."""
        embedding = call.embedding
        if embedding is None and settings.semantic and (embedder := self.embedder()) is not None:
            embedding = embedder.embed_one(keys.query)
        now = self.clock()
        self.store.put(
            CacheEntry(
                id=random.getrandbits(63),
                scope=keys.scope,
                exact_key=keys.exact_key,
                tenant=tenant,
                feature=call.attribution.feature,
                template=call.attribution.template,
                query=keys.query,
                answer=answer,
                embedding=embedding,
                created_at=now,
                expires_at=now + settings.ttl_s,
                last_used_at=now,
            )
        )
        feature = call.attribution.feature
        count = self._stores[feature] = self._stores.get(feature, 0) + 1
        if count % EVICT_EVERY == 1 or count < EVICT_EVERY:
            self.store.evict(feature, settings.max_entries)
        if count % EVICT_EVERY == 1:
            self.store.purge_expired(now)

    # --- verification sampling --------------------------------------------------------------------

    async def _verify(
        self, call: Call, entry: CacheEntry, settings: SemanticCacheSettings, next: Next
    ) -> None:
        """Ask the provider too, off the client's path; compare answers; record the cost and the verdict."""
        check = _verification_call(call)
        try:
            result = await next(check)
        except FareGateError as exc:  # an upstream failure: recorded like any failed request
            result = error_result(check, exc)
        except Exception:
            log.exception("cache verification failed", extra={"request_id": check.request_id})
            result = error_result(check, FareGateError("FareGate failed to verify a cached answer"))
        fresh = answer_from_response(call.protocol, _json(result.body), 0) if result.status == 200 else None
        embedder = self.embedder()
        if fresh is not None and embedder is not None:
            vectors = await self._run(embedder.embed, [fresh.text, entry.answer.text])
            agreed = float(np.dot(vectors[0], vectors[1])) >= ANSWER_AGREEMENT
            assert check.cache is not None
            check.cache.verified = agreed
            feature = call.attribution.feature
            if self.precision.record(feature, agreed, settings.target_precision):
                tightened = self.precision.tightened_by(feature)
                self._background.run(
                    self.executor, self.store.raise_tightening, feature, tightened, self.clock()
                )
                log.warning(
                    "semantic cache threshold tightened: verified answers show precision under target",
                    extra={
                        "feature": feature,
                        "threshold": self.precision.threshold(feature, _configured(settings)),
                        "target_precision": settings.target_precision,
                    },
                )
        if self.record_verification is not None:
            self.record_verification(check, result)

    def thresholds(self) -> dict[str, dict[str, float]]:
        """Per semantic feature: the configured threshold and this replica's, after verification."""
        return {
            name: {
                "configured": _configured(settings),
                "effective": self.precision.threshold(name, _configured(settings)),
            }
            for name, settings in self.features.items()
            if settings.semantic
        }

    def _adopt_stored(self) -> None:
        """In a worker thread (or at start): take the replicas' tightenings from the cache store."""
        for feature, tightened in self.store.tightenings().items():
            if feature in self.features and self.precision.adopt(feature, tightened):
                log.info("semantic cache threshold tightened elsewhere: adopted", extra={"feature": feature})

    # --- plumbing ---------------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def drain(self) -> None:
        """Wait for pending stores and verifications (shutdown, tests)."""
        await self._background.drain()


def _configured(settings: SemanticCacheSettings) -> float:
    return DEFAULT_THRESHOLD if settings.threshold is None else settings.threshold


def _verification_call(call: Call) -> Call:
    body = {k: v for k, v in call.body.items() if k not in ("stream", "stream_options")}
    return Call(
        request_id=call.request_id + "-verify",
        protocol=call.protocol,
        body=body,
        raw_body=b"",
        model_requested=call.model_requested,
        stream=False,
        headers=call.headers,
        attribution=call.attribution,
        route=call.route,
        cache=CacheOutcome("verify"),
    )


def _json(data: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _labelled(result: Result, status: str) -> Result:
    result.headers[HEADER] = status
    return result


async def _replayed(events: list[bytes], result: Result) -> AsyncIterator[bytes]:
    try:
        for event in events:
            yield event
    finally:
        for callback in result.on_complete:
            callback(result)
