"""Volatile spans in a request's cacheable prefix, and where they are.

The prefix is what every request of a feature is meant to share: the tool definitions and the system
prompt (Anthropic `system`; OpenAI's leading system and developer messages). A volatile span there (a
timestamp, a request id, a user's name) makes the prefix differ from one request to the next, so the
provider's prompt cache misses from that span to the end of the prefix.

Where each part is scanned, named by its `location` label:

- system text: ``system`` (a string), ``system[1]`` (a block of a list), ``messages[0]`` or
  ``messages[0].content[1]`` (an OpenAI system/developer message, a string or a list of parts);
- tool definitions: the tool's ``description`` and every ``description`` inside its parameter schema,
  named by their JSON path (``tools[2].description``, ``tools[2].function.description`` for OpenAI,
  ``functions[0].parameters.properties.date.description`` for legacy functions). That is where prose
  lives and where templated values get pasted. The schema itself is not scanned as JSON text: a dict
  serialised by the same client keeps its key order, so "unsorted" keys there break nothing, and enum
  values or examples in a schema are static far more often than not.

A `Finding`'s location adds the span's character offsets in that text: ``system:812-831``.

This runs on the request path (within the prefix stage's scan budget), so it only walks the body and
calls the detector; it never serialises the body and never raises, whatever the body holds. Tools sent
in a changing order are a cache breaker too, but seeing it takes several requests: the prefix tracker
does it in the gateway and `faregate lint` does it over a log, so `prefix_findings` does not report it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from faregate.volatile import find_volatile_spans

__all__ = [
    "TOOL_ORDER",
    "Finding",
    "PrefixBlock",
    "block_findings",
    "prefix_blocks",
    "prefix_findings",
    "system_text",
    "tool_names",
]

TOOL_ORDER = "tool_order"
_SYSTEM_ROLES = ("system", "developer")  # a tuple: `in` must not hash an odd role (a list)
_MAX_SCHEMA_DEPTH = 32  # parameter schemas nest a few levels; a deeper body is odd, not worth recursing into


@dataclass(frozen=True, slots=True)
class Finding:
    """A volatile span in a prefix: ``text == <the text at location's label>[start:end]``.

    `text` is prompt text: callers decide whether to keep it (the ledger stores kind and location only).
    """

    kind: str  # a `faregate.volatile.KINDS` kind, or `TOOL_ORDER`
    text: str
    location: str  # "system:812-831", "system[1]:5-40", "messages[0]:5-40", "tools[2].description:10-30"
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class PrefixBlock:
    """One cacheable part of a prefix: a system text or one tool definition.

    `strings` are the (location label, text) pairs scanned in it; `value` is what the block costs in
    tokens (the system text, or the tool definition, which `faregate lint` counts as JSON).
    """

    label: str  # "system", "system[1]", "messages[0].content[1]", "tools[2]", "functions[0]"
    section: Literal["system", "tools"]
    value: Any
    strings: tuple[tuple[str, str], ...]


def prefix_findings(protocol: Literal["openai", "anthropic"], body: Mapping[str, Any]) -> list[Finding]:
    """The volatile spans in `body`'s tools and system prompt, in the provider's cache order.

    Anthropic caches tools, then system; OpenAI renders the system messages first and appends the tool
    definitions. The first finding is therefore the one that breaks the most of the prefix.
    """
    found: list[Finding] = []
    for block in prefix_blocks(protocol, body):
        found.extend(block_findings(block))
    return found


def block_findings(block: PrefixBlock) -> list[Finding]:
    """The volatile spans in one block, in order."""
    return [
        Finding(span.kind, span.text, f"{label}:{span.start}-{span.end}", span.start, span.end)
        for label, text in block.strings
        for span in find_volatile_spans(text)
    ]


def prefix_blocks(protocol: Literal["openai", "anthropic"], body: Mapping[str, Any]) -> list[PrefixBlock]:
    """`body`'s system parts and tool definitions as blocks, in the provider's cache order."""
    if not isinstance(body, Mapping):
        return []
    system = [
        PrefixBlock(label, "system", text, ((label, text),)) for label, text in system_text(protocol, body)
    ]
    key, tools = _tools(protocol, body)
    tool_blocks = [_tool_block(protocol, f"{key}[{i}]", tool) for i, tool in enumerate(tools)]
    return tool_blocks + system if protocol == "anthropic" else system + tool_blocks


def system_text(protocol: Literal["openai", "anthropic"], body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(location label, text) of each part of the system prompt, in order; non-text parts are skipped."""
    if not isinstance(body, Mapping):
        return []
    if protocol == "anthropic":
        return _text_parts("system", body.get("system"), "[{}]")
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    parts: list[tuple[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in _SYSTEM_ROLES:
            break
        parts.extend(_text_parts(f"messages[{i}]", message.get("content"), ".content[{}]"))
    return parts


def tool_names(protocol: Literal["openai", "anthropic"], body: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The tools' names in the order sent, or None when the request has no tools.

    Anthropic `tools[].name`; OpenAI `tools[].function.name` (`custom` tools: `tools[].custom.name`) or
    legacy `functions[].name`. A tool without a name counts as "".
    """
    if not isinstance(body, Mapping):
        return None
    _, tools = _tools(protocol, body)
    if not tools:
        return None
    names: list[str] = []
    for tool in tools:
        name: Any = None
        if isinstance(tool, Mapping):
            _, inner = _openai_inner(tool) if protocol == "openai" else ("", None)
            name = (inner or tool).get("name")
        names.append(name if isinstance(name, str) else "")
    return tuple(names)


def _text_parts(label: str, content: Any, index_format: str) -> list[tuple[str, str]]:
    if isinstance(content, str):
        return [(label, content)] if content else []
    if not isinstance(content, list):
        return []
    parts: list[tuple[str, str]] = []
    for j, part in enumerate(content):
        if isinstance(part, Mapping) and part.get("type", "text") == "text":
            text = part.get("text")
            if isinstance(text, str) and text:
                parts.append((label + index_format.format(j), text))
    return parts


def _tools(protocol: str, body: Mapping[str, Any]) -> tuple[str, Sequence[Any]]:
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        return "tools", tools
    if protocol == "openai":
        functions = body.get("functions")
        if isinstance(functions, list) and functions:
            return "functions", functions
    return "tools", ()


def _openai_inner(tool: Mapping[str, Any]) -> tuple[str, Mapping[str, Any] | None]:
    """An OpenAI tool's definition: `{"type": "function", "function": {...}}` (or `custom`)."""
    for key in ("function", "custom"):
        inner = tool.get(key)
        if isinstance(inner, Mapping):
            return key, inner
    return "", None


def _tool_block(protocol: str, label: str, tool: Any) -> PrefixBlock:
    if not isinstance(tool, Mapping):
        return PrefixBlock(label, "tools", tool, ())
    inner, path = tool, label
    if protocol == "openai" and not label.startswith("functions"):
        key, nested = _openai_inner(tool)
        if nested is not None:
            inner, path = nested, f"{label}.{key}"
    strings: list[tuple[str, str]] = []
    description = inner.get("description")
    if isinstance(description, str) and description:
        strings.append((f"{path}.description", description))
    for key in ("input_schema", "parameters"):
        schema = inner.get(key)
        if isinstance(schema, Mapping | list):
            strings.extend(_schema_descriptions(f"{path}.{key}", schema, 0))
    return PrefixBlock(label, "tools", tool, tuple(strings))


def _schema_descriptions(path: str, node: Any, depth: int) -> Iterator[tuple[str, str]]:
    """`description` strings anywhere in a JSON schema, with their JSON paths."""
    if depth > _MAX_SCHEMA_DEPTH:
        return
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{path}.{key}"
            if key == "description" and isinstance(value, str):
                if value:
                    yield child, value
            elif isinstance(value, Mapping | list):
                yield from _schema_descriptions(child, value, depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, Mapping | list):
                yield from _schema_descriptions(f"{path}[{i}]", value, depth + 1)
