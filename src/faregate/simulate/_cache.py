"""A model of provider prompt caching, so simulated usage reports realistic cached tokens.

- OpenAI caches automatically: a prompt of at least 1,024 tokens reads from cache the longest prefix
  it shares with a prompt seen in the last few minutes, in 128-token blocks.
- Anthropic caches only up to a `cache_control` breakpoint: the prefix up to it is read from cache
  if the same prefix was used within the TTL, and written to it otherwise (billed at 1.25x input).

Prompts are compared piece by piece (tools, system prompt parts, messages, documents), as chained
hashes, which is precise wherever prompts differ at piece boundaries: a clock inside a system prompt,
a new question, a different document. Each use refreshes the TTL, as both providers do.
"""

from __future__ import annotations

from collections.abc import Sequence

TTL_SECONDS = 300.0
MIN_CACHEABLE = 1024
OPENAI_BLOCK = 128
_PURGE_EVERY = 4096


class PromptCache:
    def __init__(self) -> None:
        self._seen: dict[int, float] = {}  # chained prefix hash -> last use
        self._uses = 0

    def use(
        self,
        model: str,
        segments: Sequence[tuple[str, int]],
        when: float,
        input_tokens: int,
        breakpoint_at: int | None,
    ) -> tuple[int, int]:
        """(cache read tokens, cache write tokens) of a prompt made of `segments` (text, tokens).

        `breakpoint_at` is None for automatic (OpenAI) caching, else the number of leading segments
        covered by the Anthropic `cache_control` breakpoint.
        """
        self._uses += 1
        if self._uses % _PURGE_EVERY == 0:
            self._seen = {k: t for k, t in self._seen.items() if t >= when - TTL_SECONDS}
        seen = self._seen
        fresh_after = when - TTL_SECONDS
        key = hash(model)
        if breakpoint_at is not None:
            prefix = 0
            for text, tokens in segments[:breakpoint_at]:
                key = hash((key, text))
                prefix += tokens
            last = seen.get(key)
            seen[key] = when
            if prefix < MIN_CACHEABLE:
                return 0, 0
            return (prefix, 0) if last is not None and last >= fresh_after else (0, prefix)
        position = matched = 0
        matching = True
        for text, tokens in segments:
            key = hash((key, text))
            position += tokens
            if matching:
                last = seen.get(key)
                if last is not None and last >= fresh_after:
                    matched = position
                else:
                    matching = False
            seen[key] = when
        matched = min(matched, input_tokens)
        return (matched // OPENAI_BLOCK * OPENAI_BLOCK if matched >= MIN_CACHEABLE else 0), 0
