"""The workload: sessions on a simulated timeline, turned into request/response envelopes in time order.

1. A timeline: sessions (one conversation each) start on a business-hours curve over the period and
   ask their follow-up questions a minute or so apart; every turn is one request.
2. Requests in time order: each session keeps its history, so turn n carries the n-1 earlier
   questions and answers. A prompt-cache model (`PromptCache`) sees them in that order.
3. Usage: input totals are the local token count of the request (`faregate.tokens`), output is the
   length of the generated answer, cached tokens come from the cache model.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

from faregate.tokens import count_messages_anthropic, count_messages_openai

from ._cache import PromptCache
from ._corpus import DOCS_CLOSE, DOCS_OPEN, Counter, counter, tools_json
from ._faq import FAQ_INTENTS
from ._features import (
    CHAT,
    DOC_ANALYSIS,
    DOC_INSTRUCTIONS,
    FEATURES,
    HOURLY,
    SUPPORT,
    SUPPORT_EXTRAS,
    WEEKEND_FACTOR,
    Feature,
)
from ._grammar import FOLLOW_UPS
from ._library import Corpus, Document, corpus, document_header
from ._prompts import clock_line

# The simulated period starts here (a Monday); fixed, so a seed always gives the same log.
EPOCH = datetime(2026, 11, 2, tzinfo=UTC)
_ALNUM = string.ascii_letters + string.digits
_INTENT_WEIGHTS = [1 / (rank + 1) ** 0.9 for rank in range(len(FAQ_INTENTS))]
_PHRASING_WEIGHTS = [1 / (rank + 1) ** 1.0 for rank in range(10)]


@dataclass(slots=True)
class _Turn:
    """One user message as it stays in the history: its pieces (for the cache) and token counts."""

    pieces: tuple[str, ...]
    text: str
    tokens: int
    reply: str = ""
    reply_tokens: int = 0


@dataclass(slots=True)
class _Session:
    feature: Feature
    index: int
    times: list[float]
    template: str = ""
    user: str = ""
    rng: Random = field(default_factory=Random)
    turns: list[_Turn] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    intent: int = 0


def _timeline(requests: int, seed: int, days: int) -> tuple[list[_Session], list[tuple[float, int, int]]]:
    """Sessions and their turns as (seconds since EPOCH, session, turn), exactly `requests` of them."""
    rng = Random(seed)
    period = days * 86400.0
    day_weights = [WEEKEND_FACTOR if (EPOCH + timedelta(days=d)).weekday() >= 5 else 1.0 for d in range(days)]
    # Features are dealt by largest deficit, so any prefix of sessions has them in proportion.
    session_weight = [f.request_share / f.mean_turns for f in FEATURES]
    norm = sum(session_weight)
    dealt = [0] * len(FEATURES)
    sessions: list[_Session] = []
    events: list[tuple[float, int, int]] = []
    while len(events) < requests:
        n = len(sessions)
        which = max(range(len(FEATURES)), key=lambda i: session_weight[i] / norm * (n + 1) - dealt[i])
        dealt[which] += 1
        feature = FEATURES[which]
        turns = 1
        while turns < feature.max_turns and rng.random() < feature.continue_probability:
            turns += 1
        turns = min(turns, requests - len(events))
        gaps = [rng.uniform(*feature.turn_gap) for _ in range(turns - 1)]
        day = rng.choices(range(days), day_weights)[0]
        start = day * 86400.0 + rng.choices(range(24), HOURLY)[0] * 3600.0 + rng.random() * 3600.0
        start = max(0.0, min(start, period - 1.0 - sum(gaps)))
        times = [start]
        for gap in gaps:
            times.append(times[-1] + gap)
        sessions.append(_Session(feature, n, times))
        events.extend((t, n, k) for k, t in enumerate(times))
    events.sort()
    return sessions, events


class _Builder:
    """Turns timeline events into envelopes; holds the per-run state (cache model, ids, counters)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.lib: Corpus = corpus()
        self.cache = PromptCache()
        self.ids = Random(seed * 7919 + 1)
        self.skeletons: dict[tuple[str, int], int] = {}
        self.tools_tokens: dict[str, int] = {}
        self.intent_pieces: dict[tuple[int, int], tuple[str, ...]] = {}
        self.headers: dict[tuple[int, str], str] = {}

    # --- session content ---------------------------------------------------------------------
    def open(self, session: _Session) -> None:
        feature = session.feature
        rng = session.rng = Random(f"{self.seed}/{session.index}")
        names, weights = zip(*feature.templates, strict=True)
        session.template = rng.choices(names, weights)[0]
        session.user = f"u-{int(feature.users * rng.random() ** 2):05d}"
        if feature is SUPPORT:
            session.intent = rng.choices(range(len(FAQ_INTENTS)), _INTENT_WEIGHTS)[0]
        elif feature is DOC_ANALYSIS:
            if session.template.startswith("contract"):
                session.documents = rng.sample(self.lib.contracts, rng.randint(3, 4))
            else:
                session.documents = rng.sample(self.lib.reports, rng.randint(2, 4))

    def context(self, documents: list[Document]) -> list[str]:
        pieces = [DOCS_OPEN]
        for index, document in enumerate(documents, start=1):
            key = (index, document.source)
            header = self.headers.get(key)
            if header is None:
                header = self.headers[key] = document_header(index, document.source)
            pieces += (header, document.body)
        pieces.append(DOCS_CLOSE)
        return pieces

    def support_message(self, session: _Session, count: Counter) -> tuple[tuple[str, ...], int]:
        """Retrieval is deterministic for a question, so a repeated question repeats its context."""
        rng = session.rng
        intent, phrasings = FAQ_INTENTS[session.intent]
        if session.turns and rng.random() < 0.5:
            question = rng.choice(FOLLOW_UPS[SUPPORT.name])
            phrasing = len(session.turns)
        else:
            phrasing = rng.choices(range(len(phrasings)), _PHRASING_WEIGHTS)[0]
            question = phrasings[phrasing]
            style = rng.random()
            if style < 0.12:
                question = "Hi, " + question[:1].lower() + question[1:]
            elif style < 0.20:
                question = "Hello! " + question
            if rng.random() < 0.35:
                question += " " + " ".join(rng.sample(SUPPORT_EXTRAS, rng.randint(1, 3)))
        key = (session.intent, phrasing)
        context = self.intent_pieces.get(key)
        if context is None:
            retrieval = Random(f"{intent}/{phrasing}")
            articles = self.lib.help_centre[intent]
            shift = phrasing % len(articles)
            chosen = articles[shift:] + articles[:shift]
            if retrieval.random() < 0.3:  # a neighbouring article outranks the third one
                other = FAQ_INTENTS[retrieval.randrange(len(FAQ_INTENTS))][0]
                chosen = [*chosen[:2], self.lib.help_centre[other][0]]
            context = self.intent_pieces[key] = tuple(self.context(chosen))
        return (*context, question), count(question)

    def doc_message(self, session: _Session, count: Counter) -> tuple[tuple[str, ...], int]:
        rng = session.rng
        if session.turns:
            question = rng.choice(FOLLOW_UPS[DOC_ANALYSIS.name])
            if rng.random() < 0.5:
                return (question,), count(question)
            focus, tokens = self.lib.legal_focus.compose(rng, rng.randint(20, 60), count, lead=True)
            return (question + focus,), count(question) + tokens
        instruction = rng.choice(DOC_INSTRUCTIONS[session.template])
        focus, tokens = self.lib.legal_focus.compose(rng, rng.randint(50, 120), count, (9, 9), lead=True)
        return (*self.context(session.documents), instruction + focus), count(instruction) + tokens

    def chat_message(self, session: _Session, count: Counter) -> tuple[tuple[str, ...], int]:
        rng = session.rng
        target = int(min(700, 170 * math.exp(0.5 * rng.gauss(0, 1))))
        query, tokens = self.lib.work_details.compose(rng, target, count, (40, 40), opener=self.lib.work_asks)
        if rng.random() < 0.3:
            return (*self.context(rng.sample(self.lib.workspace_docs, rng.randint(2, 3))), query), tokens
        return (query,), tokens

    def reply(self, session: _Session, count: Counter) -> tuple[str, int]:
        feature, rng = session.feature, session.rng
        if rng.random() < feature.long_output_share:
            target = rng.randint(*feature.long_output)
        else:
            target = int(feature.output_median * math.exp(feature.output_sigma * rng.gauss(0, 1)))
        if feature.max_tokens is not None:
            target = min(target, feature.max_tokens - 100)
        pool = {
            SUPPORT.name: self.lib.support_replies,
            DOC_ANALYSIS.name: self.lib.legal_replies,
            CHAT.name: self.lib.work_replies,
        }[feature.name]
        return pool.compose(rng, max(20, target), count)

    # --- one request ---------------------------------------------------------------------------
    def envelope(self, session: _Session, turn: int, when: float) -> dict[str, Any]:
        feature = session.feature
        if turn == 0:
            self.open(session)
        count = counter(feature.model)
        build = {
            SUPPORT.name: self.support_message,
            DOC_ANALYSIS.name: self.doc_message,
            CHAT.name: self.chat_message,
        }[feature.name]
        pieces, query_tokens = build(session, count)
        current = _Turn(pieces, "".join(pieces), sum(count(p) for p in pieces[:-1]) + query_tokens)
        stamp = EPOCH + timedelta(seconds=when)
        head, tail = self.lib.systems[session.template]
        system_pieces = (head, clock_line(stamp), tail) if tail else (head,)
        system_tokens = sum(count(p) for p in system_pieces)
        tools = self.lib.tools.get(session.template)
        history: list[dict[str, Any]] = []
        for past in session.turns:
            history.append({"role": "user", "content": past.text})
            history.append({"role": "assistant", "content": past.reply})
        history.append({"role": "user", "content": current.text})
        content_tokens = (
            system_tokens + current.tokens + sum(t.tokens + t.reply_tokens for t in session.turns)
        )
        body: dict[str, Any] = {"model": feature.model}
        system = "".join(system_pieces)
        if feature.provider == "openai":
            body["messages"] = [{"role": "system", "content": system}, *history]
        else:
            body["system"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
            body["messages"] = history
        if tools:
            body["tools"] = tools
        if feature.max_tokens is not None:
            body["max_tokens"] = feature.max_tokens
        if feature.temperature is not None:
            body["temperature"] = feature.temperature
        input_tokens = self.skeleton(feature, session.template, len(history), tools) + content_tokens

        segments: list[tuple[str, int]] = []
        tool_text = tools_json(tools)
        if tool_text:
            segments.append((tool_text, self.tools_tokens[session.template]))
        segments += [(p, count(p)) for p in system_pieces]
        for past in session.turns:
            segments += [(p, count(p)) for p in past.pieces]
            segments.append((past.reply, past.reply_tokens))
        segments += [(p, count(p)) for p in pieces[:-1]]
        segments.append((pieces[-1], query_tokens))
        breakpoint_at = (
            len(system_pieces) + (1 if tool_text else 0) if feature.provider == "anthropic" else None
        )
        cached, written = self.cache.use(feature.model, segments, when, input_tokens, breakpoint_at)

        text, output_tokens = self.reply(session, count)
        current.reply, current.reply_tokens = text, output_tokens
        session.turns.append(current)
        return {
            "request": body,
            "response": self.response(
                feature, body, text, input_tokens, cached, written, output_tokens, when
            ),
            "metadata": {
                "feature": feature.name,
                "team": feature.team,
                "template": session.template,
                "user": session.user,
                "conversation": f"conv-{self.seed}-{session.index:06d}",
            },
            "timestamp": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "provider": feature.provider,
        }

    def skeleton(self, feature: Feature, template: str, messages: int, tools: Any) -> int:
        """Tokens of the request's framing and tools: the request with every text emptied."""
        key = (template, messages)
        tokens = self.skeletons.get(key)
        if tokens is None:
            roles = [{"role": "user" if i % 2 == 0 else "assistant", "content": ""} for i in range(messages)]
            empty: dict[str, Any] = {"model": feature.model, "messages": roles}
            if tools:
                empty["tools"] = tools
            if feature.provider == "openai":
                empty["messages"] = [{"role": "system", "content": ""}, *roles]
                tokens = count_messages_openai(feature.model, empty)
                tools_only = count_messages_openai(feature.model, {"messages": [], "tools": tools})
            else:
                empty["system"] = [{"type": "text", "text": ""}]
                tokens = count_messages_anthropic(feature.model, empty)
                tools_only = count_messages_anthropic(feature.model, {"messages": [], "tools": tools})
            self.skeletons[key] = tokens
            self.tools_tokens[template] = tools_only - 3  # less the reply priming
        return tokens

    def response(
        self,
        feature: Feature,
        body: dict[str, Any],
        text: str,
        input_tokens: int,
        cached: int,
        written: int,
        output_tokens: int,
        when: float,
    ) -> dict[str, Any]:
        ids = self.ids
        if feature.provider == "openai":
            return {
                "id": "chatcmpl-" + "".join(ids.choices(_ALNUM, k=29)),
                "object": "chat.completion",
                "created": int(EPOCH.timestamp() + when),
                "model": feature.response_model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": input_tokens,
                    "completion_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens,
                    "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                    "completion_tokens_details": {
                        "reasoning_tokens": 0,
                        "audio_tokens": 0,
                        "accepted_prediction_tokens": 0,
                        "rejected_prediction_tokens": 0,
                    },
                },
                "service_tier": "default",
                "system_fingerprint": "fp_" + "".join(ids.choices("0123456789abcdef", k=10)),
            }
        return {
            "id": "msg_01" + "".join(ids.choices(_ALNUM, k=22)),
            "type": "message",
            "role": "assistant",
            "model": feature.response_model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens - cached - written,
                "cache_creation_input_tokens": written,
                "cache_read_input_tokens": cached,
                "cache_creation": {"ephemeral_5m_input_tokens": written, "ephemeral_1h_input_tokens": 0},
                "output_tokens": output_tokens,
                "service_tier": "standard",
            },
        }


def generate_workload(requests: int, seed: int, *, days: int = 1) -> Iterator[dict[str, Any]]:
    """`requests` envelopes in time order over `days` simulated days from `EPOCH`; the same for a seed."""
    if requests < 0 or days < 1:
        raise ValueError("requests must be >= 0 and days >= 1")
    sessions, events = _timeline(requests, seed, days)
    builder = _Builder(seed)
    for when, index, turn in events:
        session = sessions[index]
        yield builder.envelope(session, turn, when)
        if turn == len(session.times) - 1:
            sessions[index] = _Session(session.feature, index, [])  # free the finished history
