"""The history stage: apply the feature's conversation-history policy to the messages sent upstream.

It runs after the response caches (their keys cover the conversation as the client sent it) and
before the prefix stage (which then places its breakpoints on what is really sent, summary
included). The client's body is never changed in place: the stage swaps `call.body` for a composed
copy and has the anatomy re-measured on it, so the ledger's components are what was billed and
`history_tokens_before` / `_after` what the policy saved.

The policy steps aside (forwards the conversation unchanged, with the reason recorded) when the
messages already break the provider's role rules; a summary that cannot be built falls back to the
window for that request. Neither ever fails the client's request.

Retrieval needs an embedding of every earlier exchange. Those are computed once per conversation
and stored (digests and vectors only, never the text); the exchanges still inside the verbatim
window are embedded off the request path, so by the time one slides out of the window its vector
is waiting, and the request itself embeds only the new query (memoised: the semantic cache may
have embedded the same text already).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import orjson

from faregate.cache.embeddings import Embedder
from faregate.call import UNATTRIBUTED, Call, HistoryOutcome, Result
from faregate.config import HistorySettings
from faregate.history.compose import compose_body, summary_tokens
from faregate.history.exchanges import Conversation, Exchange, role_problem, split_conversation
from faregate.history.policies import Selection, retrieve, summary, summary_due, window
from faregate.history.store import ConversationKey, HistoryStore, Summary, Vector
from faregate.pipeline.background import Background
from faregate.pipeline.base import Next
from faregate.pipeline.identify import tenant_of
from faregate.pipeline.summarize import Summarizer, SummaryFailed

log = logging.getLogger("faregate.history")


class HistoryStage:
    def __init__(
        self,
        features: dict[str, HistorySettings],
        store: HistoryStore | None,
        embedder: Callable[[], Embedder | None],
        executor: ThreadPoolExecutor,
        summarizer: Summarizer | None,
        remeasure: Callable[[Call], None],
        summary_models: dict[str, str] | None = None,
        background: ThreadPoolExecutor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.features = features
        self.store = store
        self.embedder = embedder
        self.executor = executor
        # Off-path work (embedding long assistant turns) in its own pool, so it never queues a
        # request's own lookups behind it.
        self.background = background or executor
        self.summarizer = summarizer
        self.remeasure = remeasure
        self.summary_models = summary_models or {}
        self.clock = clock
        self._pending = Background(log, "background history work")

    async def __call__(self, call: Call, next: Next) -> Result:
        settings = self.features.get(call.attribution.feature)
        if settings is None:
            return await next(call)
        model = call.route.model if call.route else call.model_requested
        conv = split_conversation(call.protocol, call.body, model)
        if conv is None or not conv.history:
            call.history = HistoryOutcome(settings.policy)
            return await next(call)
        before = sum(e.tokens for e in conv.history)
        problem = role_problem(call.protocol, conv.messages)
        if problem is not None:
            call.history = HistoryOutcome(settings.policy, before, before, f"roles: {problem}")
            return await next(call)
        key = ConversationKey(tenant_of(call), call.attribution.feature, conversation_id(call, conv))
        selection, summary, note = await self._select(call, settings, conv, key)
        call.history = HistoryOutcome(settings.policy, selection.tokens_before, selection.tokens_after, note)
        if len(selection.keep) < len(conv.history):
            call.body = compose_body(call.body, conv, selection, summary)
            self.remeasure(call)
        if settings.policy == "retrieve":
            self._in_background(self._embed_missing, key, conv.history)
        return await next(call)

    async def drain(self) -> None:
        """Wait for background embeddings (tests, shutdown)."""
        await self._pending.drain()

    # --- policies ---------------------------------------------------------------------------------

    async def _select(
        self, call: Call, settings: HistorySettings, conv: Conversation, key: ConversationKey
    ) -> tuple[Selection, str | None, str | None]:
        """(selection, summary text, note): what to send, never raising."""
        fallback = window(conv, keep_last=settings.keep_last, max_tokens=settings.max_history_tokens)
        if settings.policy == "window":
            return fallback, None, None
        try:
            if settings.policy == "retrieve":
                loop = asyncio.get_running_loop()
                sims = await loop.run_in_executor(self.executor, self._similarities, key, conv, settings)
                selection = retrieve(
                    conv,
                    keep_last=settings.keep_last,
                    top=settings.top,
                    similarities=sims,
                    max_tokens=settings.max_history_tokens,
                )
                return selection, None, None
            return await self._summarised(call, settings, conv, key)
        except SummaryFailed as exc:
            return fallback, None, f"summary failed, window used: {exc}"
        except Exception as exc:  # a store or model failure must not fail the client's request
            log.exception("history policy failed", extra={"request_id": call.request_id})
            return fallback, None, f"{settings.policy} failed, window used: {type(exc).__name__}"

    def _similarities(
        self, key: ConversationKey, conv: Conversation, settings: HistorySettings
    ) -> list[float]:
        """Cosine similarity of the query to each earlier exchange (0 for the verbatim tail).

        One search of the store (pgvector's `<=>` on PostgreSQL) scores every stored exchange of
        the request; an exchange it does not return has no vector yet (a conversation first seen,
        or after the store forgot it) and is embedded and stored now, once.
        """
        embedder = self._embedder()
        store = self._store()
        older = conv.history[: max(len(conv.history) - settings.keep_last, 0)]
        if not older or settings.top == 0:
            return [0.0] * len(conv.history)
        query = embedder.embed_one(conv.query)
        digests = [e.digest for e in older]
        scores = dict(store.nearest(key, query, digests, len(digests)))
        missing = [e for e in older if e.digest not in scores]
        if missing:
            vectors = embedder.embed([e.text for e in missing])
            store.put_vectors(key, [(e.digest, vectors[i]) for i, e in enumerate(missing)], self.clock())
            scores.update(zip((e.digest for e in missing), (vectors @ query).tolist(), strict=True))
        return [scores[d] for d in digests] + [0.0] * (len(conv.history) - len(older))

    async def _summarised(
        self, call: Call, settings: HistorySettings, conv: Conversation, key: ConversationKey
    ) -> tuple[Selection, str | None, str | None]:
        loop = asyncio.get_running_loop()
        store = self._store()
        stored = await loop.run_in_executor(self.executor, store.summary, key)
        history = conv.history
        stale = None
        if stored is not None and (
            stored.covered > len(history) or stored.covered_digest != _covered(history, stored.covered)
        ):
            stale, stored = stored.covered_digest, None  # the client edited or cut the summarised turns
        covered = stored.covered if stored is not None else 0
        upto = summary_due(
            len(history), keep_last=settings.keep_last, summarized_upto=covered, step=settings.summary_every
        )
        if upto > covered:
            assert self.summarizer is not None
            model = settings.summary_model or self.summary_models[call.attribution.feature]
            text = await self.summarizer(
                call,
                model,
                stored.text if stored is not None else None,
                [e.text for e in history[covered:upto]],
                max_tokens=settings.summary_max_tokens,
                timeout_s=settings.summary_timeout_s,
            )
            tokens = summary_tokens(conv.protocol, conv.model, text)
            stored = Summary(upto, _covered(history, upto), text, model, tokens, self.clock())
            put = partial(store.put_summary, key, stored, self.clock(), replaces=stale)
            await loop.run_in_executor(self.executor, put)
        else:
            self._in_background(store.put_vectors, key, [], self.clock())  # still in use: not idle
        if stored is None:
            return summary(conv, summarized_upto=0, summary_tokens=0), None, None
        cost = summary_tokens(conv.protocol, conv.model, stored.text)
        selection = summary(
            conv, summarized_upto=stored.covered, summary_tokens=cost, max_tokens=settings.max_history_tokens
        )
        return selection, stored.text, None

    # --- background -------------------------------------------------------------------------------

    def _in_background(self, fn: Callable[..., Any], *args: Any) -> None:
        self._pending.run(self.background, fn, *args)

    def _embed_missing(self, key: ConversationKey, history: Sequence[Exchange]) -> None:
        """Embed the exchanges still in the verbatim window, off the request path; mark the chat used."""
        store = self._store()
        known = store.vectors(key, [e.digest for e in history])
        missing = [e for e in history if e.digest not in known]
        items: list[tuple[str, Vector]] = []
        if missing:
            vectors = self._embedder().embed([e.text for e in missing])
            items = [(e.digest, vectors[i]) for i, e in enumerate(missing)]
        store.put_vectors(key, items, self.clock())

    def _embedder(self) -> Embedder:
        embedder = self.embedder()
        if embedder is None:
            raise RuntimeError("the embedding model is not loaded")
        return embedder

    def _store(self) -> HistoryStore:
        if self.store is None:
            raise RuntimeError("no history store")
        return self.store


def conversation_id(call: Call, conv: Conversation) -> str:
    """The client's conversation id, else one derived from the conversation's opening user turn.

    The opening turn does not change as the conversation grows, so every request of one chat gets
    the same id without the client sending anything. Two chats opening with the same words share
    an id, which is harmless: stored turns are looked up by their content digests and a summary is
    used only when the turns it covers are the request's own.
    """
    if call.attribution.conversation != UNATTRIBUTED:
        return call.attribution.conversation
    first = conv.history[0] if conv.history else conv.current
    opening = conv.messages[first.start] if first is not None else None
    content = opening.get("content") if isinstance(opening, dict) else None
    h = hashlib.blake2b(call.attribution.user.encode("utf-8", "surrogatepass"), digest_size=8)
    h.update(b"\x00" + orjson.dumps(content, option=orjson.OPT_SORT_KEYS))
    derived = "auto-" + h.hexdigest()
    call.attribution.conversation = derived
    return derived


def _covered(history: Sequence[Exchange], upto: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    for exchange in history[:upto]:
        h.update(exchange.digest.encode())
    return h.hexdigest()
