"""Stable hashes of a request's cacheable prefix: its tools, its system prompt and its conversation.

Provider caches match prefixes byte for byte, so the hashes are taken over the JSON the client sent,
part by part. They must agree across gateway replicas and restarts (prefix churn is counted from the
ledger, where many replicas write), so they are BLAKE2b digests, not Python's per-process `hash()`.

- `tools`: the tool definitions (Anthropic `tools`; OpenAI `tools` or legacy `functions`);
- `system`: the tools and the system prompt (Anthropic `system`; OpenAI's leading system and developer
  messages), the prefix every request of a feature is meant to share; its distinct values per hour
  are the feature's *prefix churn*;
- `conversation`: the system prefix and the first message after it, a conversation's identity, so the
  interval between two requests sharing it is the pause between two turns of that conversation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from faregate.call import Protocol

_SYSTEM_ROLES = ("system", "developer")  # a tuple: `in` must not hash a role that is a list


@dataclass(frozen=True, slots=True)
class Fingerprint:
    tools: int  # 0 when the request has no tools
    system: int  # tools + system prompt
    conversation: int  # system prefix + first message
    empty_prefix: bool  # neither tools nor a system prompt: nothing a feature could share

    @property
    def prefix_hash(self) -> str:
        """The tools + system hash as 16 hex digits, the form the ledger stores."""
        return f"{self.system:016x}"


def fingerprint(protocol: Protocol, body: Mapping[str, Any]) -> Fingerprint:
    """Hashes of `body`'s prefix parts; never raises (an odd body hashes whatever it holds)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        messages = []
    if protocol == "anthropic":
        tools = body.get("tools")
        system: Any = body.get("system")
        rest: Sequence[Any] = messages
    else:
        tools = body.get("tools", body.get("functions"))
        lead = _leading_system(messages)
        system = messages[:lead] or None
        rest = messages[lead:]
    tools_digest = _digest(b"", tools) if tools else 0
    system_digest = _digest(tools_digest.to_bytes(8), system)
    first = rest[0] if rest else None
    return Fingerprint(
        tools=tools_digest,
        system=system_digest,
        conversation=_digest(system_digest.to_bytes(8), first),
        empty_prefix=not tools and not system,
    )


def prompt_cache_key(feature: str, template: str, print_: Fingerprint) -> str:
    """An OpenAI `prompt_cache_key`: requests of one feature, template and prefix share a cache.

    OpenAI routes a request to a cache machine by a hash of its first ~256 tokens, plus this key
    when set; with one key per (feature, template, prefix), requests that share a prefix land on the
    same machine even when their first tokens are a common boilerplate shared by other features.
    """
    digest = hashlib.blake2b(
        f"{feature}\x00{template}\x00{print_.prefix_hash}".encode("utf-8", "surrogatepass"), digest_size=8
    ).hexdigest()
    return f"fg-{digest}"


def _leading_system(messages: Sequence[Any]) -> int:
    count = 0
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in _SYSTEM_ROLES:
            break
        count += 1
    return count


def _digest(seed: bytes, value: Any) -> int:
    if value is None:
        data = b""
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    else:
        try:
            data = orjson.dumps(value)
        except TypeError:  # not JSON (a test double, a huge int): hash its repr, never fail a request
            data = repr(value).encode("utf-8", "backslashreplace")
    return int.from_bytes(hashlib.blake2b(seed + data, digest_size=8).digest())
