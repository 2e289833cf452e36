"""Opt-in prefix repair: move volatile spans after the cached prefix, sort tools and JSON keys.

A provider caches a prefix only when it is byte-identical from one request to the next, so one timestamp
or user id in the system prompt makes every request a miss. With
``features.<name>.prompt_cache.relocate_volatile: true`` the `prefix` stage sends instead:

- the system prompt with each volatile span (``timestamp``, ``date``, ``uuid``, ``request_id``,
  ``long_number``, ``counter``, ``user_id``) replaced by a placeholder such as ``[timestamp 1]``,
  numbered per kind in order of appearance, so one template gives the same bytes on every request (each
  occurrence gets its own number, even when two values happen to be equal: merging them would make the
  bytes depend on the values again). A bare run of digits found as a ``timestamp``, ``date`` or
  ``long_number`` becomes ``[number n]``, as in `faregate.volatile.stable_skeleton`: its kind depends
  on its value (an epoch or not), and one template slot must give one placeholder;
- the values in a short note (`NOTE_HEADER`) placed with the final user turn, after the tools, the
  system prompt *and* the conversation history, so all three stay cacheable. Anthropic: a text block
  appended to the final message when it is a user message (after tool_result blocks is valid);
  OpenAI: a message in the system prompt's own role (``system`` or ``developer``, which reasoning models
  require) inserted just before the last user message. No such place, no relocation: the values stay
  where they are rather than be dropped. The client's next turn arrives without the note, so a
  history breakpoint belongs before it (Anthropic: on the block before the note);
- JSON objects in the system text with unsorted keys re-serialised with sorted keys (values that then
  show as volatile inside them are relocated too), keeping the original layout style (one line, or
  ``indent=2`` at the original indentation). Numbers may be re-spelled (``1e5`` becomes ``100000.0``),
  never changed in value; an object with duplicate keys is left as it is;
- tools sorted by name (stable) when every tool has a string name, and each tool's JSON schema with
  object keys sorted at every depth; lists (``required``, ``enum``, ``anyOf`` ...) keep their order.
  This includes the order of ``properties``, which can steer the order in which a model writes the
  arguments: a trade the feature opts into, for schemas built from unordered sources.
  Anthropic ``cache_control`` marks on tools stay at their *positions*: a mark on the last tool means
  "cache all tools", and keeping positions keeps the number, order and TTLs of the client's breakpoints
  exactly as sent, so their validity rules (at most four, 1-hour before 5-minute) cannot break.

The input body is never mutated: changed parts are copied (dicts and lists along the changed path only;
no deep copy). Parts the repair does not understand (a ``system`` that is neither a string nor a list,
non-dict blocks, non-text parts) are left untouched, and nothing here raises on an odd body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faregate.call import Protocol
from faregate.volatile import VolatileSpan, find_volatile_spans

RELOCATED_KINDS = frozenset({"timestamp", "date", "uuid", "request_id", "long_number", "counter", "user_id"})
NOTE_HEADER = "Values for this request (moved out of the system prompt so it can be cached)"
_NUMERIC_KINDS = frozenset({"timestamp", "date", "long_number"})
_SYSTEM_ROLES = ("system", "developer")  # a tuple: `in` must not hash an odd role (a list)
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Repair:
    """The repaired body and what changed, for the response header and the ledger."""

    body: dict[str, Any]  # the body to send upstream; the input itself when nothing changed
    relocated: tuple[str, ...]  # kinds of the spans moved out of the system prompt, in order
    tools_sorted: bool  # the tool list was reordered
    json_sorted: int  # JSON objects re-serialised with sorted keys (system text + tool schemas)

    @property
    def changed(self) -> bool:
        return bool(self.relocated) or self.tools_sorted or self.json_sorted > 0

    def describe(self) -> str:
        """A compact header value, e.g. ``relocated=timestamp,uuid; tools-sorted; json-sorted=2``."""
        parts: list[str] = []
        if self.relocated:
            parts.append("relocated=" + ",".join(dict.fromkeys(self.relocated)))
        if self.tools_sorted:
            parts.append("tools-sorted")
        if self.json_sorted:
            parts.append(f"json-sorted={self.json_sorted}")
        return "; ".join(parts)


def repair_prefix(protocol: Protocol, body: Mapping[str, Any]) -> Repair:
    """`body` with a byte-stable prefix (see the module docstring); never raises, never mutates `body`."""
    out = dict(body)
    sent = body.get("messages")
    messages = list(sent) if isinstance(sent, list) else None
    slot = _note_slot(protocol, messages)
    texts = _Texts(relocate=slot is not None)
    if protocol == "anthropic":
        system = _rewrite_anthropic_system(body.get("system"), texts)
        if system is not body.get("system"):
            out["system"] = system
    elif messages is not None:
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in _SYSTEM_ROLES:
                break
            content = _rewrite_content(message.get("content"), texts)
            if content is not message.get("content"):
                messages[i] = {**message, "content": content}
                out["messages"] = messages
    if texts.values and messages is not None and slot is not None:
        _place_note(protocol, messages, slot, texts.note())
        out["messages"] = messages
    tools_sorted = False
    schemas_sorted = 0
    for key in ("tools", "functions") if protocol == "openai" else ("tools",):
        tools = body.get(key)
        if not isinstance(tools, list) or not tools:
            continue
        new_tools, reordered, sorted_count = _repair_tools(protocol, key, tools)
        tools_sorted = tools_sorted or reordered
        schemas_sorted += sorted_count
        if new_tools is not tools:
            out[key] = new_tools
    repair = Repair(
        body=out,
        relocated=tuple(texts.kinds),
        tools_sorted=tools_sorted,
        json_sorted=texts.json_sorted + schemas_sorted,
    )
    if not repair.changed:
        return Repair(body if isinstance(body, dict) else out, (), False, 0)
    return repair


class _Texts:
    """Rewrites the texts of one system prompt; placeholders are numbered across all of its texts."""

    def __init__(self, relocate: bool) -> None:
        self.relocate = relocate
        self.counts: dict[str, int] = {}
        self.values: list[tuple[str, str]] = []  # (placeholder, value), in order of appearance
        self.kinds: list[str] = []
        self.json_sorted = 0

    def rewrite(self, text: str) -> str:
        spans = find_volatile_spans(text)
        if any(span.kind == "unsorted_json" for span in spans):
            replaced = self._sort_json(text, spans)
            if replaced is not text:
                text = replaced
                spans = find_volatile_spans(text)  # values inside the sorted objects now show up
        if not self.relocate:
            return text
        moved = [span for span in spans if span.kind in RELOCATED_KINDS]
        return _splice(text, [(span, self._placeholder(span)) for span in moved]) if moved else text

    def note(self) -> str:
        return f"{NOTE_HEADER}: " + "; ".join(f"{name} = {value}" for name, value in self.values)

    def _placeholder(self, span: VolatileSpan) -> str:
        kind = "number" if span.kind in _NUMERIC_KINDS and span.text.isdigit() else span.kind
        self.counts[kind] = number = self.counts.get(kind, 0) + 1
        name = f"[{kind} {number}]"
        self.values.append((name, span.text))
        self.kinds.append(span.kind)
        return name

    def _sort_json(self, text: str, spans: list[VolatileSpan]) -> str:
        edits: list[tuple[VolatileSpan, str]] = []
        for span in spans:
            if span.kind == "unsorted_json":
                indent = _closing_indent(text, span)
                sorted_text = _sorted_json(span.text, indent)
                if sorted_text is not None and sorted_text != span.text:
                    edits.append((span, sorted_text))
        self.json_sorted += len(edits)
        return _splice(text, edits) if edits else text


def _splice(text: str, edits: list[tuple[VolatileSpan, str]]) -> str:
    """`text` with each span (sorted, non-overlapping) replaced by its new text."""
    parts: list[str] = []
    pos = 0
    for span, new in edits:
        parts.append(text[pos : span.start])
        parts.append(new)
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts)


def _closing_indent(text: str, span: VolatileSpan) -> str:
    """The indentation of the line holding a multi-line object's closing brace: its base indentation."""
    line_start = text.rfind("\n", span.start, span.end - 1) + 1
    lead = text[line_start : span.end - 1]
    return lead if line_start and not lead.strip(" \t") else ""


def _sorted_json(source: str, indent: str) -> str | None:
    """`source` re-serialised with sorted keys in its layout style; None when that could change it."""
    duplicates = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicates
        obj = dict(pairs)
        duplicates = duplicates or len(obj) != len(pairs)
        return obj

    try:
        value = json.loads(source, object_pairs_hook=pairs_hook)
        if duplicates:
            return None
        if "\n" in source:
            pretty = json.dumps(value, sort_keys=True, ensure_ascii=False, indent=2)
            return pretty.replace("\n", "\n" + indent)
        separators = (", ", ": ") if '": ' in source else (",", ":")
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=separators)
    except (ValueError, RecursionError):
        return None


def _rewrite_anthropic_system(system: Any, texts: _Texts) -> Any:
    """The Anthropic ``system`` (a string or a list of blocks), rewritten; the same object if unchanged."""
    if isinstance(system, str):
        return texts.rewrite(system)
    if not isinstance(system, list):
        return system
    return _rewrite_blocks(system, texts)


def _rewrite_content(content: Any, texts: _Texts) -> Any:
    """An OpenAI system message's content (a string or a list of parts), rewritten."""
    if isinstance(content, str):
        return texts.rewrite(content)
    if isinstance(content, list):
        return _rewrite_blocks(content, texts)
    return content


def _rewrite_blocks(blocks: list[Any], texts: _Texts) -> list[Any]:
    """Text blocks rewritten, every other key (``cache_control``, citations) and block kept as sent."""
    out: list[Any] | None = None
    for i, block in enumerate(blocks):
        if (
            not isinstance(block, dict)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            continue
        text = texts.rewrite(block["text"])
        if text is not block["text"]:
            out = out if out is not None else list(blocks)
            out[i] = {**block, "text": text}
    return out if out is not None else blocks


def _note_slot(protocol: Protocol, messages: list[Any] | None) -> int | None:
    """Where the note goes: the final user message (Anthropic) or before the last user message (OpenAI)."""
    if not messages:
        return None
    if protocol == "anthropic":
        last = messages[-1]
        if (
            isinstance(last, dict)
            and last.get("role") == "user"
            and isinstance(last.get("content"), str | list)
        ):
            return len(messages) - 1
        return None
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if isinstance(message, dict) and message.get("role") == "user":
            return i
    return None


def _place_note(protocol: Protocol, messages: list[Any], slot: int, note: str) -> None:
    """Put the note in `messages` (already a copy of the client's list) at `slot`."""
    if protocol == "anthropic":
        message = messages[slot]
        content = message["content"]
        block = {"type": "text", "text": note}
        if isinstance(content, str):
            # an empty text block is invalid: an empty string gives way to the note alone
            blocks = [{"type": "text", "text": content}, block] if content else [block]
        else:
            blocks = [*content, block]
        messages[slot] = {**message, "content": blocks}
    else:
        messages.insert(slot, {"role": messages[0].get("role", "system"), "content": note})


def _repair_tools(protocol: Protocol, key: str, tools: list[Any]) -> tuple[list[Any], bool, int]:
    """(tools with sorted schemas, sorted by name when all are named; reordered; schemas changed)."""
    schema_path = ("input_schema",) if protocol == "anthropic" else ("function", "parameters")
    if key == "functions":
        schema_path = ("parameters",)
    repaired = [_sort_schema(tool, schema_path) for tool in tools]
    schemas_sorted = sum(1 for new, old in zip(repaired, tools, strict=True) if new is not old)
    names = [_tool_name(protocol, key, tool) for tool in repaired]
    reordered = False
    if all(name is not None for name in names):
        order = sorted(range(len(repaired)), key=lambda i: names[i] or "")
        if order != list(range(len(repaired))):
            reordered = True
            repaired = [repaired[i] for i in order]
            if protocol == "anthropic":
                repaired = _keep_cache_marks(repaired, tools)
    if not reordered and not schemas_sorted:
        return tools, False, 0
    return repaired, reordered, schemas_sorted


def _tool_name(protocol: Protocol, key: str, tool: Any) -> str | None:
    if not isinstance(tool, dict):
        return None
    holder = tool.get("function") if protocol == "openai" and key == "tools" else tool
    name = holder.get("name") if isinstance(holder, dict) else None
    return name if isinstance(name, str) else None


def _keep_cache_marks(repaired: list[Any], original: list[Any]) -> list[Any]:
    """Each ``cache_control`` mark back at the position the client put it (see the module docstring)."""
    marks = [tool.get("cache_control", _MISSING) for tool in original]
    if all(mark is _MISSING for mark in marks):
        return repaired
    out: list[Any] = []
    for tool, mark in zip(repaired, marks, strict=True):
        if tool.get("cache_control", _MISSING) is not mark:
            tool = {k: v for k, v in tool.items() if k != "cache_control"}
            if mark is not _MISSING:
                tool["cache_control"] = mark
        out.append(tool)
    return out


def _sort_schema(tool: Any, path: tuple[str, ...]) -> Any:
    """`tool` with the schema at `path` key-sorted; the same object when there is nothing to change."""
    if not isinstance(tool, dict) or not path:
        return tool
    inner = tool.get(path[0], _MISSING)
    if inner is _MISSING:
        return tool
    if len(path) > 1:
        new = _sort_schema(inner, path[1:])
    else:
        try:
            new = _sort_keys(inner)
        except RecursionError:  # absurdly deep: leave it as sent
            return tool
    return tool if new is inner else {**tool, path[0]: new}


def _sort_keys(value: Any) -> Any:
    """`value` with dict keys sorted at every depth, lists in their order; the same object if sorted."""
    if isinstance(value, dict):
        items = [(k, _sort_keys(v)) for k, v in value.items()]
        try:
            ordered = sorted(items, key=lambda kv: kv[0])
        except TypeError:  # mixed key types: not JSON, keep the order
            ordered = items
        same_order = all(a is b for a, b in zip(ordered, items, strict=True))
        if same_order and all(v is value[k] for k, v in items):
            return value
        return dict(ordered)
    if isinstance(value, list):
        new = [_sort_keys(v) for v in value]
        return value if all(a is b for a, b in zip(new, value, strict=True)) else new
    return value
