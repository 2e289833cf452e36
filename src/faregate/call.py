"""The provider-neutral request (`Call`), its outcome (`Result`) and its normalised `Usage`.

Every stage of the pipeline speaks these types, so cost logic lives in one place (pricing.py)
fed by one normalised `Usage`, whatever wire format the tokens were reported in.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import asyncio

    from faregate.anatomy import Anatomy

Protocol = Literal["openai", "anthropic"]

ATTRIBUTION_DIMENSIONS: tuple[str, ...] = (
    "feature",
    "team",
    "template",
    "cohort",
    "user",
    "conversation",
    "task",
)
UNATTRIBUTED = "unattributed"


@dataclass(slots=True)
class Attribution:
    """Who a call was for. A dimension nobody named is recorded as `unattributed`, never dropped."""

    feature: str = UNATTRIBUTED
    team: str = UNATTRIBUTED
    template: str = UNATTRIBUTED
    cohort: str = UNATTRIBUTED
    user: str = UNATTRIBUTED
    conversation: str = UNATTRIBUTED
    task: str = UNATTRIBUTED


@dataclass(slots=True)
class Usage:
    """Token counts in genai-prices' convention, whatever the provider reported.

    `input_tokens` is the *total* prompt, including cached reads and cache writes (Anthropic reports
    these apart; OpenAI includes them). `cache_write_1h_tokens` is the part of `cache_write_tokens`
    written with a 1-hour TTL; `reasoning_tokens` is the part of `output_tokens` spent reasoning.
    """

    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False


@dataclass(slots=True)
class Route:
    """Where a call goes: the configured provider and the model name it knows."""

    provider: str
    model: str


@dataclass(slots=True)
class PrefixShaping:
    """What the prefix stage saw and did, for the ledger: see `faregate.pipeline.prefix`."""

    prefix_hash: str  # tools + system prompt; distinct values per feature and hour are "prefix churn"
    findings: str | None = None  # volatile spans found in the prefix: "kind@location;..." (no prompt text)
    actions: str | None = None  # what FareGate changed, as in the X-FareGate-Prompt-Cache header
    enabled_caching: bool = False  # breakpoints added or prefix repaired: the saving is FareGate's doing


@dataclass(slots=True)
class CacheOutcome:
    """What the response caches did with a call, for the response header and the ledger."""

    status: str  # "hit" | "semantic-hit" | "miss" | "bypass"; "verify" for a verification call
    similarity: float | None = None  # a semantic hit's cosine similarity
    answer_model: str | None = None  # a hit: the model whose stored answer was served ...
    answer_usage: Usage | None = None  # ... and what producing it used: its price now is the saving
    verified: bool | None = None  # a verification call: did the fresh answer agree with the cached one


@dataclass(slots=True)
class HistoryOutcome:
    """What the history stage did with a call's conversation, for the ledger."""

    policy: str  # "window" | "summary" | "retrieve"; "summarize" for the call that built a summary
    tokens_before: int = 0  # history tokens the client sent
    tokens_after: int = 0  # history tokens sent upstream (kept turns and the summary)
    note: str | None = None  # why the policy stepped aside or fell back


@dataclass(slots=True)
class RoutingOutcome:
    """The router's decision for a call (or, for a shadow call, which routed call it checks)."""

    tier: str
    confidence: float | None = None  # calibrated probability the chosen tier answers well
    fallback: bool = False  # the frontier, because no cheaper tier cleared its bar or the router was unsure
    shadow_of: str | None = None  # a shadow call: the routed request it re-asks the frontier for
    agreed: bool | None = None  # a shadow call: did the frontier's answer agree with the routed one
    frontier: Route | None = None  # where the call would have gone unrouted: its price is the baseline


@dataclass(slots=True)
class Call:
    """One client request on its way through the pipeline.

    `body` is the parsed JSON that stages may change; `raw_body` keeps what the client sent.
    """

    request_id: str
    protocol: Protocol
    body: dict[str, Any]
    raw_body: bytes
    model_requested: str
    stream: bool
    headers: Mapping[str, str]
    attribution: Attribution = field(default_factory=Attribution)
    # Whose data this call may see (caches, conversation history): the virtual key's team when
    # FareGate authenticates clients, else a hash of the client's credential and team. Set before
    # the pipeline runs (`faregate.pipeline.identify`).
    tenant: str = ""
    key_id: str | None = None  # the FareGate virtual key's id (never the key), when one was used
    route: Route | None = None
    anatomy: asyncio.Future[Anatomy | None] | None = None  # set by the anatomy stage, read at settle
    prefix: PrefixShaping | None = None  # set by the prefix stage
    cache: CacheOutcome | None = None  # set by the cache stage
    history: HistoryOutcome | None = None  # set by the history stage
    routing: RoutingOutcome | None = None  # set by the router stage
    output_cap: int | None = None  # set by the cap stage when it lowered or set the output limit
    embedding: Any = None  # the query's embedding (NumPy vector) once computed: the router reuses it
    # Provider beta features a stage's change needs (Anthropic `anthropic-beta`), added to the client's
    betas: list[str] = field(default_factory=list)
    client_wants_stream_usage: bool = False
    # Called once the call is settled, with its result and ledger event (a budget reservation is
    # replaced by the actual cost there); failures are logged by settle, never raised.
    on_settled: list[Callable[[Call, Result, Any], None]] = field(default_factory=list)
    received_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class Result:
    """What the pipeline answers: a full body, or a stream of bytes already in the client's format.

    For a stream, `usage` and `model_used` are filled in as the stream is read; `on_complete`
    callbacks run once the stream has ended (or failed), which is when a stream can be settled.
    """

    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    usage: Usage | None = None
    model_used: str | None = None
    error_kind: str | None = None
    upstream_ms: float | None = None
    output_text: list[str] = field(default_factory=list)
    stop_reason: str | None = None  # finish_reason / stop_reason: read from the body, or by a stream's tap
    retries: int = 0  # extra attempts the upstream stage made (429, 5xx, connection errors, timeouts)
    # Upstreams that failed before the one that answered, in order: "provider/model:reason>...".
    fallbacks: str | None = None
    partial: bool = False  # a stream that failed mid-way: the client got part of an answer
    on_complete: list[Callable[[Result], None]] = field(default_factory=list)
