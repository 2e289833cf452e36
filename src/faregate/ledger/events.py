"""The ledger's one row per request: what was asked, for whom, what it used and what it cost."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

NANO = Decimal("1e-9")


def usd_to_nanos(usd: Decimal) -> int:
    """Money is stored as integer nano-dollars: a cached token can cost 0.075 micro-dollars."""
    return int((usd / NANO).to_integral_value())


def nanos_to_usd(nanos: int) -> Decimal:
    return Decimal(nanos) * NANO


@dataclass(slots=True)
class CostEvent:
    request_id: str
    ts: float  # unix seconds when the request was received
    feature: str
    team: str
    template: str
    cohort: str
    user: str
    conversation: str
    task: str
    protocol: str  # "openai" | "anthropic": the wire format the client spoke
    provider: str | None  # configured provider name; None when the request never got that far
    model_requested: str | None
    model_used: str | None
    stream: bool
    status: int  # HTTP status returned to the client
    error_kind: str | None  # FareGateError.kind or "upstream_error"; None on success
    input_tokens: int  # total prompt tokens, cached reads and cache writes included
    cached_tokens: int  # cache-read tokens
    cache_write_tokens: int  # all cache-write tokens (5-minute + 1-hour)
    cache_write_1h_tokens: int  # the 1-hour part of cache_write_tokens
    output_tokens: int  # reasoning included
    reasoning_tokens: int
    usage_estimated: bool  # counted locally because upstream sent no usage
    price_known: bool
    cost_nusd: int  # actual cost, nano-dollars
    baseline_cost_nusd: int  # cost without FareGate's optimisations (equal to cost until they land)
    latency_ms: float  # total time in FareGate, until the last byte for streams
    upstream_ms: float | None  # time waiting on the provider (to headers; to last byte for streams)
    cache_status: str | None = None  # "hit" | "semantic-hit" | "miss" | "bypass"; None: no cache ran
    tier: str | None = None  # routing tier, once routing lands
    # Prompt anatomy: input tokens by component, summing to input_tokens when usage was reported
    # (scaled to the provider's total); 0 when the request never reached the anatomy stage.
    system_tokens: int = 0
    tools_tokens: int = 0
    history_tokens: int = 0
    context_tokens: int = 0
    query_tokens: int = 0
    overhead_tokens: int = 0
    # Provider prompt caching (the prefix stage): the saving against billing every input token at the
    # plain input price (negative when a cache write cost more than it saved); the hash of the tools
    # and system prompt (distinct values per feature and hour are its "prefix churn"); volatile spans
    # found in that prefix as "kind@location;..." (never the text: prompts are private by default);
    # and what FareGate changed ("breakpoints=system,history; ttl=5m", "key", "relocated=...").
    prompt_cache_saving_nusd: int = 0
    prefix_hash: str | None = None
    prefix_findings: str | None = None
    prompt_cache_actions: str | None = None
    # Response caches: the similarity of a semantic hit; for a verification call (cache_status
    # "verify"), whether the provider's fresh answer agreed with the cached one.
    cache_similarity: float | None = None
    cache_verified: bool | None = None
    # Conversation history (the history stage): the feature's policy ("summarize" marks the call
    # that built a summary), the history tokens the client sent and those sent upstream (counted
    # alike, so before/after compare; `history_tokens` above is the anatomy of what was billed), and
    # why the policy stepped aside or fell back ("roles: ...", "summary failed: ...").
    history_policy: str | None = None
    history_tokens_before: int | None = None
    history_tokens_after: int | None = None
    history_note: str | None = None
    # Output caps: the limit FareGate imposed (None: the client's own limit stood) and whether the
    # response stopped there (finish_reason "length" / stop_reason "max_tokens").
    output_cap: int | None = None
    output_capped: bool | None = None
    # Routing (`tier` above): the classifier's calibrated probability that the chosen tier answers
    # well, and whether the request went to the frontier because no cheaper tier cleared the bar.
    # A shadow call (the frontier model asked too, off the client's path) carries the routed
    # request's id in `route_shadow_of` and whether the two answers agreed in `route_agreed`.
    route_confidence: float | None = None
    route_fallback: bool | None = None
    route_shadow_of: str | None = None
    route_agreed: bool | None = None
    # What routing and the history policy saved, in nano-dollars (both part of the baseline): the
    # same usage priced at the frontier tier's model, minus the cost; the history tokens the policy
    # removed, priced at the model's plain input price.
    routing_saving_nusd: int = 0
    history_saving_nusd: int = 0
    # Reliability and auth: the FareGate virtual key's id (never the key); retries of the upstream;
    # upstreams that failed before the one that answered ("provider/model:reason>..."); a stream that
    # failed mid-way (the tokens seen so far are what is recorded).
    key_id: str | None = None
    upstream_retries: int = 0
    upstream_fallbacks: str | None = None
    partial: bool | None = None
    # Only with `privacy.store_prompts: true`: the request body as received and the response text.
    prompt_text: str | None = None
    response_text: str | None = None

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost_nusd)
