"""Where the tokens go: a request's input tokens split into system, tools, history, context and query.

Used on every gateway request (the anatomy stage) and by the offline analyzer, so it is built on
`tokens.count_text` and its memo: text seen before (a system prompt, tool definitions, earlier turns)
costs a hash and a lookup, and only new text is encoded.

Components, for one request body:

- `system`: system and developer messages (OpenAI roles `system`/`developer`, wherever they are;
  Anthropic's top-level `system`, a string or text blocks).
- `tools`: tool definitions as JSON (`tools`, OpenAI's legacy `functions`) and an OpenAI
  `response_format` JSON schema, which is a static, per-feature definition like a tool's; for
  Anthropic also the tool-use system prompt the provider adds when `tools` is set.
- `history`: every message before the last user turn, with its tool calls and tool results; and
  assistant messages after it (the tool calls of an agent loop still working on the turn).
- `context`: retrieved material. Tool results after the last user turn (OpenAI `tool`/`function`
  messages; Anthropic `tool_result` blocks in the last user turn and user messages after it made only
  of tool results), Anthropic `document` blocks in the last user turn, and spans of the last user
  turn's text: `<context>`, `<documents>`, `<document>`, `<retrieved>` and `<search_results>`
  elements (tags included; nested elements count once) and matches of the feature's patterns.
- `query`: the rest of the last user turn, images included.
- `overhead`: message framing: tokens per message, OpenAI's role names and `name` marker (the name
  itself counts with its message), and the reply priming, with the numbers `tokens.py` uses.

The last user turn is the last user message (OpenAI), or the last user message with some content
other than `tool_result` blocks (Anthropic, where tool results travel in user messages).

The components sum exactly to `tokens.count_messages_openai` / `count_messages_anthropic` for the
same body. Cutting the last user turn's text at a context span changes how the text tokenizes at the
cut (`"foo <"` is one fewer token than `"foo "` + `"<"`); such differences are counted exactly and
given to `query`, so `context` is what the spans cost on their own and `query` the rest (never below
0: if the merged tokens outweigh the query's own, `context` gives way). Bodies that
`count_messages_*` cannot count (`messages` or `tool_calls` that are not lists, values orjson cannot
encode) still get an anatomy: what is recognisable is counted, the rest ignored, nothing raised.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from faregate.tokens import (
    ANTHROPIC_TOOL_SYSTEM_PROMPT_TOKENS,
    PER_MESSAGE_TOKENS,
    PER_NAME_TOKENS,
    REPLY_PRIMING_TOKENS,
    count_content_anthropic,
    count_content_openai,
    count_text,
    remember_count,
)

__all__ = ["COMPONENTS", "CONTEXT_TAGS", "Anatomy", "RequestView", "compile_patterns", "dissect"]

_MAPPING = (dict, Mapping)  # dict first: a parsed body's mappings are dicts, and isinstance of an ABC is slow

COMPONENTS: tuple[str, ...] = ("system", "tools", "history", "context", "query", "overhead")
CONTEXT_TAGS: tuple[str, ...] = ("context", "documents", "document", "retrieved", "search_results")


@dataclass(slots=True)
class Anatomy:
    """Input tokens by component; see the module docstring for what each holds."""

    system: int = 0
    tools: int = 0
    history: int = 0
    context: int = 0
    query: int = 0
    overhead: int = 0

    def total(self) -> int:
        return self.system + self.tools + self.history + self.context + self.query + self.overhead

    def as_dict(self) -> dict[str, int]:
        """The counts keyed by component, in `COMPONENTS` order."""
        return {
            "system": self.system,
            "tools": self.tools,
            "history": self.history,
            "context": self.context,
            "query": self.query,
            "overhead": self.overhead,
        }

    def scaled_to(self, total_input: int) -> Anatomy:
        """The same proportions in integers summing exactly to `total_input` (largest remainder).

        For a provider-reported total when the local counts are approximate (Anthropic's tokenizer is
        not public). Ties go to the component first in `COMPONENTS`; a component at 0 stays at 0.
        Local counts of 0 put the whole total in `overhead`: nothing is known about where it went.
        """
        target = max(0, total_input)
        values = [max(0, v) for v in (self.system, self.tools, self.history, self.context, self.query)]
        values.append(max(0, self.overhead))
        current = sum(values)
        if target == 0:
            return Anatomy()
        if current == 0:
            return Anatomy(overhead=target)
        shares = [v * target for v in values]  # exact integer arithmetic: share / current
        scaled = [share // current for share in shares]
        order = sorted(range(len(shares)), key=lambda i: (-(shares[i] % current), i))
        for i in order[: target - sum(scaled)]:
            scaled[i] += 1
        return Anatomy(*scaled)


@dataclass(slots=True)
class RequestView:
    """A request seen through its anatomy, with the texts the analyzers need."""

    anatomy: Anatomy
    system_text: str  # all system/developer text, joined with "\n" (for prefix-stability analysis)
    tools_json: str  # what `tools` counts, as compact JSON in the client's order, joined with "\n"
    query_text: str  # the last user turn's own words, context spans removed, stripped
    user_turns: int  # user turns in the request (1 = the first question of a conversation)


def compile_patterns(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    """Compile a feature's context patterns once (cached); raises ValueError naming a bad pattern, so
    call it when the configuration is loaded.
    """
    return _compile(tuple(patterns))


@functools.lru_cache(maxsize=256)
def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except (re.error, TypeError) as exc:
            raise ValueError(f"invalid context pattern {pattern!r}: {exc}") from exc
    return tuple(compiled)


def dissect(
    protocol: Literal["openai", "anthropic"],
    model: str,
    body: Mapping[str, Any],
    context_patterns: Sequence[re.Pattern[str]] = (),
) -> RequestView:
    """Split the input tokens of a Chat Completions (`openai`) or Messages (`anthropic`) body.

    `context_patterns` mark further context in the last user turn's text (a feature's own markers).
    Never raises on a parsed body, however odd; raises ValueError for an unknown protocol.
    """
    if protocol == "openai":
        builder: _Builder = _OpenAI(model, context_patterns)
    elif protocol == "anthropic":
        builder = _Anthropic(model, context_patterns)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; expected 'openai' or 'anthropic'")
    if isinstance(body, _MAPPING):
        builder.add_body(body)
    return builder.view()


# --- the two wire formats -------------------------------------------------------------------------


class _Builder:
    __slots__ = ("anatomy", "model", "patterns", "query_texts", "system_texts", "tools_texts", "user_turns")

    def __init__(self, model: str, patterns: Sequence[re.Pattern[str]]) -> None:
        self.model = model
        self.patterns = patterns
        self.anatomy = Anatomy()
        self.system_texts: list[str] = []
        self.tools_texts: list[str] = []
        self.query_texts: list[str] = []
        self.user_turns = 0

    def add_body(self, body: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def add_tools(self, value: Any) -> None:
        text = _json(value)
        self.tools_texts.append(text)
        self.anatomy.tools += count_text(self.model, text)

    def add_turn_text(self, text: str) -> None:
        """Text of the last user turn: context spans to `context`, the rest to `query`."""
        context, query, own_words = _split_turn(self.model, text, self.patterns)
        self.anatomy.context += context
        self.anatomy.query += query
        self.query_texts.append(own_words)

    def view(self) -> RequestView:
        return RequestView(
            anatomy=self.anatomy,
            system_text="\n".join(self.system_texts),
            tools_json="\n".join(self.tools_texts),
            query_text="\n".join(self.query_texts).strip(),
            user_turns=self.user_turns,
        )


def _messages(body: Mapping[str, Any]) -> Sequence[Any]:
    messages = body.get("messages")
    return messages if isinstance(messages, list | tuple) else ()


class _OpenAI(_Builder):
    __slots__ = ()

    def add_body(self, body: Mapping[str, Any]) -> None:
        model, anatomy = self.model, self.anatomy
        anatomy.overhead += REPLY_PRIMING_TOKENS
        messages = _messages(body)
        last_user = -1
        for i, message in enumerate(messages):
            if isinstance(message, _MAPPING) and message.get("role") == "user":
                last_user = i
                self.user_turns += 1
        for i, message in enumerate(messages):
            if not isinstance(message, _MAPPING):
                continue
            role = message.get("role", "")
            anatomy.overhead += PER_MESSAGE_TOKENS + _count_short(model, str(role))
            content = message.get("content")
            if role == "system" or role == "developer":
                component = "system"
                if text := _openai_text(content):
                    self.system_texts.append(text)
            elif i == last_user:
                component = "query"
                self._add_turn(content)
                content = None
            elif i > last_user >= 0 and (role == "tool" or role == "function"):
                component = "context"
            else:
                component = "history"
            tokens = _count_content(count_content_openai, model, content) if content is not None else 0
            if message.get("name"):
                anatomy.overhead += PER_NAME_TOKENS
                tokens += _count_short(model, str(message["name"]))
            tool_calls = message.get("tool_calls")
            if isinstance(tool_calls, list | tuple):
                for call in tool_calls:
                    if isinstance(call, _MAPPING) and isinstance(call.get("function"), _MAPPING):
                        function = call["function"]
                        tokens += _count_short(model, str(function.get("name", "")))
                        tokens += count_text(model, str(function.get("arguments", "")))
            if isinstance(message.get("function_call"), _MAPPING):
                tokens += count_text(model, _json(message["function_call"]))
            _add(anatomy, component, tokens)
        for key in ("tools", "functions"):
            if body.get(key):
                self.add_tools(body[key])
        response_format = body.get("response_format")
        if isinstance(response_format, _MAPPING) and response_format.get("json_schema"):
            self.add_tools(response_format["json_schema"])

    def _add_turn(self, content: Any) -> None:
        if isinstance(content, str):
            self.add_turn_text(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, _MAPPING) and part.get("type") == "text":
                    self.add_turn_text(str(part.get("text", "")))
                else:  # images, refusals, audio, files: the query, as tokens.py counts them
                    self.anatomy.query += _count_content(count_content_openai, self.model, [part])
        elif content is not None:
            self.anatomy.query += _count_content(count_content_openai, self.model, content)


class _Anthropic(_Builder):
    __slots__ = ()

    def add_body(self, body: Mapping[str, Any]) -> None:
        model, anatomy = self.model, self.anatomy
        anatomy.overhead += REPLY_PRIMING_TOKENS
        system = body.get("system")
        anatomy.system += _count_content(count_content_anthropic, model, system)
        if text := _anthropic_text(system):
            self.system_texts.append(text)
        messages = _messages(body)
        last_user = -1
        for i, message in enumerate(messages):
            if (
                isinstance(message, _MAPPING)
                and message.get("role") == "user"
                and _is_user_turn(message.get("content"))
            ):
                last_user = i
                self.user_turns += 1
        for i, message in enumerate(messages):
            if not isinstance(message, _MAPPING):
                continue
            anatomy.overhead += PER_MESSAGE_TOKENS
            content = message.get("content")
            if i == last_user:
                self._add_turn(content)
            elif i > last_user >= 0 and message.get("role") == "user":  # tool results only
                anatomy.context += _count_content(count_content_anthropic, model, content)
            else:
                anatomy.history += _count_content(count_content_anthropic, model, content)
        if body.get("tools"):
            anatomy.tools += ANTHROPIC_TOOL_SYSTEM_PROMPT_TOKENS
            self.add_tools(body["tools"])

    def _add_turn(self, content: Any) -> None:
        if isinstance(content, str):
            self.add_turn_text(content)
            return
        for block in content:  # a list: _is_user_turn said so
            if not isinstance(block, _MAPPING):
                continue
            kind = block.get("type")
            if kind == "text":
                self.add_turn_text(str(block.get("text", "")))
            elif kind == "tool_result" or kind == "document":
                self.anatomy.context += _count_content(count_content_anthropic, self.model, [block])
            else:  # images, and anything else tokens.py counts
                self.anatomy.query += _count_content(count_content_anthropic, self.model, [block])


def _is_user_turn(content: Any) -> bool:
    if isinstance(content, str):
        return True
    if isinstance(content, list):
        return any(isinstance(b, _MAPPING) and b.get("type") != "tool_result" for b in content)
    return False


def _count_content(counter: Callable[[str, Any], int], model: str, content: Any) -> int:
    """`tokens.count_content_*`, but for content tokens.py cannot encode as JSON (integers beyond 64
    bits, deep nesting): item by item, the rest as `_json` writes it.
    """
    try:
        return counter(model, content)
    except (TypeError, ValueError, RecursionError):
        pass
    if isinstance(content, list) and len(content) > 1:
        return sum(_count_content(counter, model, [item]) for item in content)
    return count_text(model, _json(content))


def _count_short(model: str, text: str) -> int:
    """Roles, names and function names: a handful of short strings that repeat on every request."""
    return _count_cached(model, text) if len(text) <= 64 else count_text(model, text)


@functools.lru_cache(maxsize=4096)
def _count_cached(model: str, text: str) -> int:
    return count_text(model, text)


def _add(anatomy: Anatomy, component: str, tokens: int) -> None:
    if component == "system":
        anatomy.system += tokens
    elif component == "history":
        anatomy.history += tokens
    elif component == "context":
        anatomy.context += tokens
    else:
        anatomy.query += tokens


def _openai_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, _MAPPING) and p.get("type") == "text"
        )
    return ""


def _anthropic_text(content: Any) -> str:
    return _openai_text(content)  # the same shapes: a string or {"type": "text", "text": ...} items


def _json(value: Any) -> str:
    """Compact JSON as tokens.py writes it (orjson), falling back to the standard library for what
    orjson refuses (integers beyond 64 bits, non-string keys), and to "" for what nothing encodes.
    """
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return ""


# --- the last user turn: context spans and the query ---------------------------------------------

_TAG = re.compile(r"<(/?)(" + "|".join(CONTEXT_TAGS) + r")\b[^<>]*>", re.IGNORECASE)

# Positions where cl100k_base and o200k_base pre-tokenization always splits, whatever the text around
# them. A text cut at such a position counts exactly as its two halves do, because no pre-token
# crosses it and the pre-token before it ends the same way at the end of a string:
#   - before a space that follows a non-space: no pre-token continues from a non-space into a space
#     (a leading space belongs to the next pre-token);
#   - after a line break, before a non-space other than "/" (only o200k's punctuation pre-token takes
#     "/" after its trailing line breaks);
#   - after a letter, before ASCII punctuation other than "'" (which may start o200k's contraction
#     suffix): letter pre-tokens hold only letters (and marks), their prefix comes first;
#   - after a digit, before an ASCII non-digit: digits only ever form runs of one to three.
# tests/test_anatomy.py checks the claim against both tokenizers on random text.
_SAFE_CUT = re.compile(
    r"(?<=\S)(?= )"
    r"|(?<=[\r\n])(?=[^\s/])"
    r"|(?<=[^\W\d_])(?=[!-&(-/:-@\[-`{-~])"
    r"|(?<=[0-9])(?=[\x00-/:-\x7f])"
)


def _safe(text: str, p: int) -> bool:
    return p <= 0 or p >= len(text) or _SAFE_CUT.match(text, p) is not None


def _safe_after(text: str, p: int) -> int:
    """The first safe cut strictly after `p` (the end of the text if none)."""
    m = _SAFE_CUT.search(text, p + 1)
    return m.start() if m else len(text)


def _safe_before(text: str, p: int) -> int:
    """The last safe cut strictly before `p` (the start of the text if none)."""
    end, width = p, 64
    while end > 0:
        start = max(0, end - width)
        last = 0
        for m in _SAFE_CUT.finditer(text, start, end):
            last = m.start()
        if last > 0:
            return last
        end, width = start, width * 4
    return 0


def _context_spans(text: str, patterns: Sequence[re.Pattern[str]]) -> tuple[list[tuple[int, int]], list[int]]:
    """Context spans of `text` (merged, sorted) and the edges of the elements inside them."""
    found: list[tuple[int, int]] = []
    if "<" in text:
        open_tags: list[tuple[str, int]] = []
        for m in _TAG.finditer(text):
            name = m.group(2).lower()
            if not m.group(1):
                if not m.group(0).endswith("/>"):
                    open_tags.append((name, m.start()))
                continue
            for k in range(len(open_tags) - 1, -1, -1):  # close the innermost open element of that name
                if open_tags[k][0] == name:
                    found.append((open_tags[k][1], m.end()))
                    del open_tags[k:]
                    break
            # a closing tag with no opening one, or an element never closed: not context
    for pattern in patterns:
        for m in pattern.finditer(text):
            if m.end() > m.start():
                found.append(m.span())
    if not found:
        return [], []
    found.sort()
    spans: list[tuple[int, int]] = []
    for start, end in found:
        if spans and start <= spans[-1][1]:
            if end > spans[-1][1]:
                spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    edges = sorted({edge for span in found for edge in span})
    return spans, edges


def _count_span(model: str, text: str, start: int, end: int, edges: list[int]) -> int:
    """Tokens of text[start:end], counted in pieces cut at safe positions near the inner elements'
    edges, so a retrieved document that comes back in another request is a memo hit.
    """
    cuts = [start]
    for edge in edges:
        if start < edge < end:
            cut = edge if _safe(text, edge) else _safe_after(text, edge)
            if cuts[-1] < cut < end:
                cuts.append(cut)
    cuts.append(end)
    return sum(count_text(model, text[a:b]) for a, b in itertools.pairwise(cuts))


def _split_turn(model: str, text: str, patterns: Sequence[re.Pattern[str]]) -> tuple[int, int, str]:
    """(context tokens, query tokens, the text without its context spans) for a last-turn text."""
    spans, edges = _context_spans(text, patterns)
    if not spans:
        return 0, count_text(model, text), text
    # pieces alternate between the query's own words and context spans
    pieces: list[tuple[int, int, bool]] = []
    position = 0
    for start, end in spans:
        if start > position:
            pieces.append((position, start, False))
        pieces.append((start, end, True))
        position = end
    if position < len(text):
        pieces.append((position, len(text), False))
    counts = [
        _count_span(model, text, a, b, edges) if is_context else count_text(model, text[a:b])
        for a, b, is_context in pieces
    ]
    context = sum(c for c, piece in zip(counts, pieces, strict=True) if piece[2])
    query = sum(counts) - context
    # Where a cut between pieces is not a safe one, the text tokenizes differently across it: count
    # the smallest stretch around it bounded by safe cuts as a whole, and correct by the difference.
    window: list[int] | None = None  # [left, right, first piece, last piece]
    for j in range(1, len(pieces)):
        cut = pieces[j][0]
        if _safe(text, cut):
            continue
        left, right = _safe_before(text, cut), _safe_after(text, cut)
        if window is not None and left < window[1]:
            window[1] = max(window[1], right)
            window[3] = j
            continue
        if window is not None:
            context, query = _correct(model, text, pieces, counts, window, context, query)
        window = [left, right, j - 1, j]
    if window is not None:
        context, query = _correct(model, text, pieces, counts, window, context, query)
    if query < 0:  # merged tokens outweighing the query's own: keep the sum, never a negative part
        context, query = context + query, 0
    remember_count(model, text, context + query)  # when this turn is history, it is a memo hit
    own_words = "".join(text[a:b] for a, b, is_context in pieces if not is_context)
    return context, query, own_words


def _correct(
    model: str,
    text: str,
    pieces: list[tuple[int, int, bool]],
    counts: list[int],
    window: list[int],
    context: int,
    query: int,
) -> tuple[int, int]:
    left, right, first, last = window
    apart = count_text(model, text[left : pieces[first + 1][0]])
    apart += sum(counts[first + 1 : last])
    apart += count_text(model, text[pieces[last][0] : right])
    difference = count_text(model, text[left:right]) - apart
    if all(pieces[k][2] for k in range(first, last + 1)):
        return context + difference, query
    return context, query + difference
