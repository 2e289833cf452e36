"""The body sent upstream after a history policy: the client's body, minus dropped exchanges, plus
an optional summary; and the prompt that asks a model for that summary.

The client's body is never mutated: the result is a shallow copy with a new `messages` list (and,
for an Anthropic summary, a new `system` list). Message objects are shared with the client's body,
not copied, so a later stage that edits a message must copy it first (as it must for any body).

Composition is byte-stable: the same conversation, selection and summary text give identical
output, so a summarised prefix keeps hitting the provider's prompt cache until the summary is
extended. The summary goes where a prompt cache wants stable text: for OpenAI a system message right
after the client's leading messages (those before the first user turn: its system prompt); for
Anthropic a text block at the end of top-level `system`, after the client's own blocks (their
`cache_control` breakpoints kept as they are).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from faregate.history.exchanges import Conversation, Protocol
from faregate.history.policies import Selection
from faregate.tokens import PER_MESSAGE_TOKENS, count_text

__all__ = ["SUMMARY_PREFIX", "compose_body", "kept_indices", "summary_prompt", "summary_tokens"]

SUMMARY_PREFIX = "Summary of the earlier part of this conversation (those turns are not repeated below):\n"

_INSTRUCTION = (
    "You keep a running summary of a conversation between a user and an assistant. The summary replaces "
    "the turns it covers, so keep everything a later answer could need: names, numbers, dates, "
    "decisions, constraints and preferences, and every fact the user stated about themselves or their "
    "task; keep the assistant's conclusions, not its wording."
)
_EXTEND = (
    "Extend the previous summary with the new turns: keep its content and order, add what the new "
    "turns bring, and change only what they correct. Do not rewrite it from scratch."
)
_FORMAT = "Write short plain sentences. Answer with the summary only, without a preamble."


def kept_indices(conv: Conversation, selection: Selection) -> list[int]:
    """Indices into `conv.messages` that a composed body sends, ascending: pinned messages, the
    selection's exchanges and the current exchange.
    """
    keep = set(conv.pinned)
    for i in selection.keep:
        exchange = conv.history[i]
        keep.update(range(exchange.start, exchange.end))
    if conv.current is not None:
        keep.update(range(conv.current.start, conv.current.end))
    return sorted(keep)


def compose_body(
    body: Mapping[str, Any], conv: Conversation, selection: Selection, summary_text: str | None
) -> dict[str, Any]:
    """A shallow copy of `body` whose `messages` are the pinned ones, the kept exchanges and the
    current exchange in their original order, with `summary_text` (when not None) as a summary.

    Raises ValueError for an Anthropic `system` that is neither a string nor a list of blocks (the
    API would refuse it anyway), since there is no valid place for the summary.
    """
    indices = kept_indices(conv, selection)
    if conv.protocol == "anthropic":
        # Exchanges start with user turns, so this drops nothing in practice; a body must start with one.
        current = conv.current.start if conv.current is not None else len(conv.messages)
        while indices and indices[0] < current and _role(conv.messages[indices[0]]) != "user":
            indices.pop(0)
    messages = [conv.messages[i] for i in indices]
    out = dict(body)
    out["messages"] = messages
    if summary_text is None:
        return out
    text = SUMMARY_PREFIX + summary_text
    if conv.protocol == "openai":
        # After the client's leading messages (its system prompt), before anything from the turns: a
        # system message the client sent mid-conversation stays after the summary of what preceded it.
        first = conv.history[0] if conv.history else conv.current
        start = first.start if first is not None else len(conv.messages)
        at = sum(1 for i in indices if i < start)
        messages.insert(at, {"role": "system", "content": text})
        return out
    block = {"type": "text", "text": text}
    system = body.get("system")
    if system is None or system == "":
        out["system"] = [block]
    elif isinstance(system, str):
        out["system"] = [{"type": "text", "text": system}, block]
    elif isinstance(system, list):
        out["system"] = [*system, block]
    else:
        raise ValueError(f"cannot add a summary to a system of type {type(system).__name__}")
    return out


def summary_tokens(protocol: Protocol, model: str, summary_text: str) -> int:
    """What the summary adds to a composed body, counted as `faregate.tokens` counts it: a system
    message (OpenAI, with its framing) or a system text block (Anthropic).
    """
    tokens = count_text(model, SUMMARY_PREFIX + summary_text)
    if protocol == "openai":
        tokens += PER_MESSAGE_TOKENS + count_text(model, "system")
    return tokens


def summary_prompt(exchanges_text: Sequence[str], previous_summary: str | None) -> list[dict[str, Any]]:
    """Messages for the summarisation call: one user message (valid in both protocols) holding the
    instruction, the previous summary if any, and the new exchanges' texts (`Exchange.text`).

    Extending rather than rewriting keeps what the summary already says stable, so facts do not
    drift out of it with every extension.
    """
    parts = [_INSTRUCTION]
    if previous_summary:
        parts.append(_EXTEND)
    parts.append(_FORMAT)
    prompt = " ".join(parts)
    if previous_summary:
        prompt += f"\n\n<previous_summary>\n{previous_summary}\n</previous_summary>"
    turns = "\n\n".join(exchanges_text)
    prompt += f"\n\n<new_turns>\n{turns}\n</new_turns>"
    return [{"role": "user", "content": prompt}]


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, Mapping) else None
