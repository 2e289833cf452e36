"""What the response caches store: the answer, and what an entry needs to be found and trusted again.

An answer is stored protocol-neutral (text, stop reason, usage), not as the provider's bytes, so a hit
can be rendered as the client's JSON or as a proper SSE stream with fresh ids (`faregate.cache.replay`),
whichever way the original request was made. Only plain text answers are cached: tool calls, several
choices or a truncated answer are not reusable as they stand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from faregate.call import Protocol

Vector = npt.NDArray[np.float32]  # one L2-normalised embedding, shape (DIM,)


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    protocol: Protocol  # the wire format it was answered in (part of the scope: never crosses over)
    model: str  # the model that answered (the provider's name for it, as reported)
    text: str
    stop_reason: str  # OpenAI finish_reason ("stop") or Anthropic stop_reason ("end_turn", "stop_sequence")
    input_tokens: int  # the original call's usage: reported again on a hit, and priced as the saving
    output_tokens: int
    cost_nusd: int  # what the original call cost, nano-dollars: a hit saves this much


@dataclass(slots=True)
class CacheEntry:
    id: int  # 63-bit, unique across replicas (random)
    scope: str  # hex hash of tenant, feature, model and everything else that changes the answer
    exact_key: str  # hex hash of the normalised request: the exact-match tier's key
    tenant: str  # hashed client key + team: never answers across tenants
    feature: str
    template: str
    query: str  # the last user message's text: what guards compare (stored because the cache must)
    answer: CachedAnswer
    embedding: Vector | None  # None when the feature uses only the exact tier
    created_at: float
    expires_at: float
    last_used_at: float = field(default=0.0)
    hits: int = 0
