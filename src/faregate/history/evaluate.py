"""Replay conversations through a history policy offline: tokens saved, and what context it loses.

Each conversation is replayed request by request, as a chat client sends it: request t holds every
turn before the t-th user turn plus that turn. Each request goes through the gateway's own code
(`split_conversation`, the policy, `compose_body`) and is counted with `tokens.count_messages_openai`
with and without the policy, so the numbers are what the gateway would send, not a model of it.

Questions (conversations with labelled evidence) are asked as one more user turn after the last
turn; a question is *recalled* when every evidence turn is in the context sent verbatim. For the
summary policy there is no model here, so the summary is an extractive stand-in (the first sentence
of each summarised exchange, cut to 400 tokens) whose token count stands for a real summary's, and
`evidence_in_summary_input` says how often the evidence at least reached the summariser's input.

Retrieval embeds every exchange (its text, or its user turn's text: `Params.match`) and every query
once per conversation, in one batch, and scores an exchange by the dot product of the query's vector
with its vector (both L2-normalised: cosine similarity).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from faregate.history.compose import compose_body, kept_indices, summary_tokens
from faregate.history.exchanges import Conversation, Exchange, split_conversation, turn_text
from faregate.history.policies import Selection, retrieve, summary, summary_due, window
from faregate.tokens import count_messages_openai, encoding_for_model

__all__ = [
    "FLAT_MIN_REQUESTS",
    "FLAT_MIN_SHARE",
    "FLAT_TOLERANCE",
    "LONG_MIN_TURNS",
    "Dialogue",
    "Params",
    "Question",
    "Turn",
    "evaluate",
    "extractive_summary",
    "flat_after_turn",
    "flat_min_requests",
]

PolicyName = Literal["window", "summary", "retrieve"]
Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]
OnProgress = Callable[[int, int], None]

LATE_REQUEST = 20
LONG_MIN_TURNS = 20  # a "long" conversation: this many messages or more
FLAT_TOLERANCE = 0.15  # input tokens "flat": within ±15% of their value at the turn it starts
# Request numbers reached by fewer conversations than this (a share of all, and at least a count) are
# too few to judge flatness: their mean describes a handful of long conversations, not the policy.
FLAT_MIN_SHARE = 0.2
FLAT_MIN_REQUESTS = 10
SUMMARY_STAND_IN = "extractive stand-in"
_SENTENCE = re.compile(r"^.*?[.!?](?=\s|$)")


@dataclass(slots=True, frozen=True)
class Turn:
    id: str
    role: str
    content: str


@dataclass(slots=True, frozen=True)
class Question:
    question: str
    answer: str
    evidence: tuple[str, ...]


@dataclass(slots=True, frozen=True)
class Dialogue:
    id: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...] = ()


@dataclass(slots=True, frozen=True)
class Params:
    """A policy and its settings, as `faregate history eval` takes them.

    `match` says what retrieval embeds for an exchange: its whole text ("exchange", what the
    gateway's history stage embeds, so the default), only its user turn ("user"), or both, scoring
    the better of the two ("max"). On bench/data/long-conversations-dev.jsonl (K=4, R=4) evidence
    recall was 0.734 (exchange), 0.734 (user) and 0.766 (max); "max" costs a gateway little, since
    each user turn was embedded as the query when it was sent.
    """

    policy: PolicyName
    keep_last: int = 4
    top: int = 4
    max_history_tokens: int | None = None
    summary_every: int = 8
    model: str = "gpt-4o"
    budgets: tuple[int, ...] = (500, 1000, 2000, 4000)
    match: Literal["exchange", "user", "max"] = "exchange"


def extractive_summary(texts: Sequence[str], max_tokens: int = 400, model: str = "gpt-4o") -> str:
    """The first sentence of each text, one a line, cut to `max_tokens`: a deterministic stand-in for
    a model's summary, so the offline replay can count what a summary of this size costs.
    """
    lines = []
    for text in texts:
        first = text.strip().split("\n", 1)[0]
        match = _SENTENCE.match(first)
        lines.append(match.group(0) if match else first)
    joined = "\n".join(line for line in lines if line)
    encoding = encoding_for_model(model)
    ids = encoding.encode_ordinary(joined)
    return joined if len(ids) <= max_tokens else encoding.decode(ids[:max_tokens])


@dataclass(slots=True)
class _Totals:
    per_turn: dict[int, list[int]] = field(default_factory=dict)  # turn: [requests, without, with]
    history_without: int = 0
    history_with: int = 0
    input_without: int = 0
    input_with: int = 0
    long_conversations: int = 0
    long_without: int = 0
    long_with: int = 0
    late_requests: int = 0  # requests from LATE_REQUEST on: "by turn 20" of a chat
    late_without: int = 0
    late_with: int = 0
    by_length: dict[int, list[int]] = field(default_factory=dict)  # requests // 10 * 10: [n, without, with]
    questions: int = 0
    verbatim: int = 0
    summary_input: int = 0
    question_history_with: int = 0
    by_budget: dict[int, int] = field(default_factory=dict)


def evaluate(
    dialogues: Sequence[Dialogue],
    params: Params,
    embed: Embed | None = None,
    on_progress: OnProgress | None = None,
) -> dict[str, Any]:
    """Replay every dialogue through the policy; the report `faregate history eval` prints.

    `embed` (e.g. `Embedder.embed`) is required for the retrieve policy and unused otherwise.
    """
    if params.policy == "retrieve" and embed is None:
        raise ValueError("the retrieve policy needs an embed function")
    totals = _Totals(by_budget=dict.fromkeys(params.budgets, 0))
    for done, dialogue in enumerate(dialogues, 1):
        _Replay(dialogue, params, embed, totals).run()
        if on_progress is not None:
            on_progress(done, len(dialogues))
    return _report(dialogues, params, totals)


class _Replay:
    """One dialogue: its requests in order, then its questions."""

    def __init__(self, dialogue: Dialogue, params: Params, embed: Embed | None, totals: _Totals) -> None:
        self.params = params
        self.totals = totals
        self.ids = [t.id for t in dialogue.turns]
        self.messages: list[dict[str, Any]] = [{"role": t.role, "content": t.content} for t in dialogue.turns]
        self.dialogue = dialogue
        self.summarized_upto = 0
        self.vectors: dict[str, npt.NDArray[np.float32]] = {}
        if params.policy == "retrieve" and embed is not None:
            self._embed_all(embed)

    def run(self) -> None:
        p, t = self.params, self.totals
        history_without = history_with = 0
        request = 0
        for i, message in enumerate(self.messages):
            if message["role"] != "user":
                continue
            request += 1
            body = {"messages": self.messages[: i + 1]}
            conv = split_conversation("openai", body, p.model)
            assert conv is not None  # it ends with a user turn
            selection, summary_text = self._select(conv, p.max_history_tokens, advance=True)
            composed = compose_body(body, conv, selection, summary_text)
            without = count_messages_openai(p.model, body)
            with_policy = count_messages_openai(p.model, composed)
            row = t.per_turn.setdefault(request, [0, 0, 0])
            row[0] += 1
            row[1] += without
            row[2] += with_policy
            t.input_without += without
            t.input_with += with_policy
            history_without += selection.tokens_before
            history_with += selection.tokens_after
            if request >= LATE_REQUEST:
                t.late_requests += 1
                t.late_without += selection.tokens_before
                t.late_with += selection.tokens_after
        bucket = t.by_length.setdefault(request // 10 * 10, [0, 0, 0])
        bucket[0] += 1
        bucket[1] += history_without
        bucket[2] += history_with
        t.history_without += history_without
        t.history_with += history_with
        if len(self.messages) >= LONG_MIN_TURNS:
            t.long_conversations += 1
            t.long_without += history_without
            t.long_with += history_with
        for question in self.dialogue.questions:
            self._ask(question)

    def _ask(self, question: Question) -> None:
        p, t = self.params, self.totals
        body = {"messages": [*self.messages, {"role": "user", "content": question.question}]}
        conv = split_conversation("openai", body, p.model)
        assert conv is not None
        selection, _ = self._select(conv, p.max_history_tokens, advance=False)
        sent = {self.ids[i] for i in kept_indices(conv, selection) if i < len(self.ids)}
        verbatim = all(e in sent for e in question.evidence)
        t.questions += 1
        t.verbatim += verbatim
        t.question_history_with += selection.tokens_after
        if p.policy == "summary":
            summarised = {
                self.ids[i] for e in conv.history[: selection.summarized_upto] for i in range(e.start, e.end)
            }
            t.summary_input += all(e in sent or e in summarised for e in question.evidence)
        if p.policy == "retrieve":
            for budget in p.budgets:
                chosen, _ = self._select(conv, budget, advance=False)
                sent = {self.ids[i] for i in kept_indices(conv, chosen) if i < len(self.ids)}
                t.by_budget[budget] += all(e in sent for e in question.evidence)

    def _select(
        self, conv: Conversation, max_tokens: int | None, *, advance: bool
    ) -> tuple[Selection, str | None]:
        p = self.params
        if p.policy == "window":
            return window(conv, keep_last=p.keep_last, max_tokens=max_tokens), None
        if p.policy == "retrieve":
            sims = self._similarities(conv)
            return retrieve(
                conv, keep_last=p.keep_last, top=p.top, similarities=sims, max_tokens=max_tokens
            ), None
        upto = summary_due(
            len(conv.history),
            keep_last=p.keep_last,
            summarized_upto=self.summarized_upto,
            step=p.summary_every,
        )
        if advance:
            self.summarized_upto = upto
        if upto == 0:
            return summary(conv, summarized_upto=0, summary_tokens=0, max_tokens=max_tokens), None
        text = extractive_summary([e.text for e in conv.history[:upto]], model=p.model)
        cost = summary_tokens("openai", p.model, text)
        return summary(conv, summarized_upto=upto, summary_tokens=cost, max_tokens=max_tokens), text

    # --- retrieval ----------------------------------------------------------------------------------

    def _embed_all(self, embed: Embed) -> None:
        """Every text this dialogue's requests and questions will compare, embedded in one batch."""
        conv = split_conversation("openai", {"messages": self.messages}, self.params.model)
        texts: set[str] = {q.question for q in self.dialogue.questions}
        if conv is not None:
            for exchange in [*conv.history, conv.current]:
                if exchange is not None:
                    texts.update(self._exchange_texts(conv, exchange))
            texts.update(str(m["content"]) for m in self.messages if m["role"] == "user")
        ordered = sorted(texts)
        if ordered:
            self.vectors = dict(zip(ordered, embed(ordered), strict=True))

    def _exchange_texts(self, conv: Conversation, exchange: Exchange) -> list[str]:
        match = self.params.match
        if match == "exchange":
            return [exchange.text]
        if match == "user":
            return [turn_text(conv, exchange)]
        return [exchange.text, turn_text(conv, exchange)]

    def _similarities(self, conv: Conversation) -> list[float] | None:
        if not self.vectors:
            return None
        query = self.vectors[conv.query]
        return [
            max(float(self.vectors[text] @ query) for text in self._exchange_texts(conv, e))
            for e in conv.history
        ]


def _report(dialogues: Sequence[Dialogue], params: Params, t: _Totals) -> dict[str, Any]:
    per_turn = [
        {
            "turn": turn,
            "requests": n,
            "input_tokens_without": round(without / n, 1),
            "input_tokens_with": round(with_policy / n, 1),
        }
        for turn, (n, without, with_policy) in sorted(t.per_turn.items())
    ]
    report: dict[str, Any] = {
        "policy": params.policy,
        "params": {
            "keep_last": params.keep_last,
            "top": params.top if params.policy == "retrieve" else None,
            "max_history_tokens": params.max_history_tokens,
            "summary_every": params.summary_every if params.policy == "summary" else None,
            "model": params.model,
            "match": params.match if params.policy == "retrieve" else None,
        },
        "conversations": len(dialogues),
        "requests": sum(n for n, _, _ in t.per_turn.values()),
        "per_turn": per_turn,
        "input_tokens_without": t.input_without,
        "input_tokens_with": t.input_with,
        "history_tokens_without": t.history_without,
        "history_tokens_with": t.history_with,
        "history_reduction": _reduction(t.history_with, t.history_without),
        "input_reduction": _reduction(t.input_with, t.input_without),
        "long_conversations": {
            "min_turns": LONG_MIN_TURNS,
            "conversations": t.long_conversations,
            "history_reduction": _reduction(t.long_with, t.long_without),
        },
        # Per request from the 20th on (a chat "by turn 20"), and whole conversations by length: the
        # total over a conversation counts its early requests, where there is little to drop.
        "late_requests": {
            "from_request": LATE_REQUEST,
            "requests": t.late_requests,
            "history_reduction": _reduction(t.late_with, t.late_without),
        },
        "by_length": [
            {"requests": f"{lo}-{lo + 9}", "conversations": n, "history_reduction": _reduction(w, wo)}
            for lo, (n, wo, w) in sorted(t.by_length.items())
        ],
        "flat_after_turn": flat_after_turn(per_turn),
        "flat_min_requests": flat_min_requests(per_turn),
    }
    if params.policy == "summary":
        report["summary_model"] = SUMMARY_STAND_IN
    if t.questions:
        report["questions"] = t.questions
        report["evidence_recall"] = round(t.verbatim / t.questions, 4)
        report["question_history_tokens"] = round(t.question_history_with / t.questions, 1)
        if params.policy == "summary":
            report["evidence_in_summary_input"] = round(t.summary_input / t.questions, 4)
        if params.policy == "retrieve":
            report["recall_by_budget"] = {str(b): round(n / t.questions, 4) for b, n in t.by_budget.items()}
    return report


def flat_after_turn(per_turn: Sequence[dict[str, Any]]) -> int | None:
    """The first request number from which mean input tokens with the policy stay within
    ±FLAT_TOLERANCE of their value there to the end; None when no such stretch of two or more
    request numbers exists. Only request numbers with at least `flat_min_requests` requests count.
    """
    least = flat_min_requests(per_turn)
    rows = [(r["turn"], r["input_tokens_with"]) for r in per_turn if r["requests"] >= least]
    for k, (turn, value) in enumerate(rows[:-1]):
        if all(abs(v - value) <= FLAT_TOLERANCE * value for _, v in rows[k:]):
            return int(turn)
    return None


def flat_min_requests(per_turn: Sequence[dict[str, Any]]) -> int:
    """Requests a request number needs to count for `flat_after_turn` (every conversation makes
    request 1, so that row's count is the number of conversations).
    """
    conversations = per_turn[0]["requests"] if per_turn else 0
    return max(FLAT_MIN_REQUESTS, math.ceil(FLAT_MIN_SHARE * conversations))


def _reduction(after: int, before: int) -> float | None:
    return None if before == 0 else round(1 - after / before, 4)
