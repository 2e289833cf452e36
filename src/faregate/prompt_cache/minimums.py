"""The minimum prefix length Anthropic will cache, per model: a dated table.

A `cache_control` breakpoint whose prefix is shorter than the model's minimum is accepted and
silently ignored (no error, no cache entry), so the breakpoint placer skips positions that cannot
qualify and spends its four slots where they pay. The numbers change with model generations (Opus 4.5
raised its minimum from 1,024 to 4,096), hence the date: re-check the table when `AS_OF` is old.

Unknown models get `DEFAULT_MIN_TOKENS` (1,024, the most common value): a breakpoint below the real
minimum costs nothing, the API just does not cache, while one skipped above it loses the saving.
"""

from __future__ import annotations

import functools
import re

__all__ = ["AS_OF", "DEFAULT_MIN_TOKENS", "min_cacheable_tokens"]

AS_OF = "2026-11"
DEFAULT_MIN_TOKENS = 1024

# (family, version) -> minimum cacheable prompt tokens.
# Source: Anthropic docs, "Prompt caching" > "Cache limitations" (platform.claude.com), as of AS_OF.
_MINIMUMS: dict[tuple[str, str], int] = {
    ("opus", "4.6"): 4096,
    ("opus", "4.5"): 4096,
    ("haiku", "4.5"): 4096,
    # Some third-party docs (orq.ai) say 2,048 for Sonnet 4.6; Anthropic's page says 1,024. We follow
    # Anthropic, and a breakpoint under the real minimum would only go unused.
    ("sonnet", "4.6"): 1024,
    ("sonnet", "4.5"): 1024,
    ("opus", "4.1"): 1024,
    ("opus", "4"): 1024,
    ("sonnet", "4"): 1024,
    ("sonnet", "3.7"): 1024,
    ("sonnet", "3.5"): 1024,
    ("opus", "3"): 1024,
    ("haiku", "3.5"): 2048,
    ("haiku", "3"): 2048,
    # Newer models, from third-party summaries of the same page (not yet checked against it): Opus 4.7
    # at 4,096 (one source says 2,048), Opus 4.8 at 1,024.
    ("opus", "4.7"): 4096,
    ("opus", "4.8"): 1024,
}

# Both naming schemes, after dots became dashes: "claude-3-5-haiku-20241022" (version first) and
# "claude-sonnet-4-5-20250929" (family first). A minor version is one digit not followed by another,
# so the date in "claude-opus-4-20250514" is not read as a minor version.
_NAME = re.compile(
    r"claude-(?:(?P<old_version>\d+(?:-\d(?!\d))?)-(?P<old_family>opus|sonnet|haiku)"
    r"|(?P<family>opus|sonnet|haiku)-(?P<version>\d+(?:-\d(?!\d))?))"
)


@functools.lru_cache(maxsize=256)
def min_cacheable_tokens(model: str) -> int:
    """The minimum prefix length, in tokens, that `model` caches; `DEFAULT_MIN_TOKENS` if unknown.

    Accepts dated ids and aliases (`claude-sonnet-4-5-20250929`, `claude-3-5-haiku-latest`), provider
    prefixes (`anthropic/claude-sonnet-4.5`), Bedrock (`us.anthropic.claude-opus-4-1-20250805-v1:0`)
    and Vertex (`claude-haiku-4-5@20251001`) names. Memoised: it runs on every Anthropic request.
    """
    match = _NAME.search(model.lower().replace(".", "-"))
    if match is None:
        return DEFAULT_MIN_TOKENS
    family = match["family"] or match["old_family"]
    version = (match["version"] or match["old_version"]).replace("-", ".")
    return _MINIMUMS.get((family, version), DEFAULT_MIN_TOKENS)
