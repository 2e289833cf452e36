"""What the file given to `faregate lint` is, and reading it.

The input kind is recognised by its content, not its name:

- a request log: JSON Lines, plain or gzipped, as `faregate analyze` reads it;
- a single JSON request body: an object with `messages` and/or `system`, or an envelope with a
  `request`;
- anything else is a prompt text (a system prompt in .txt or .md).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import orjson

from faregate.analyze.reader import InputError, open_input
from faregate.prompt_cache.lint.report import Kind, LintInputError

__all__ = ["read_all", "sniff"]

_MAX_BODY_BYTES = 64 << 20  # a pretty-printed request body larger than this is not a request body


def sniff(path: Path) -> tuple[Kind, dict[str, Any] | None]:
    """Recognise the input by its first two non-blank lines (and, for a multi-line JSON body, all of it)."""
    lines = _first_lines(path, 2)
    if not lines:
        raise LintInputError(f"{path} is empty: nothing to lint")
    if not lines[0].lstrip().startswith(b"{"):
        return "text", None
    first = _json_object(lines[0])
    if first is not None:
        if len(lines) > 1 or "request" in first:
            return "log", None
        return ("body", first) if _is_body(first) else ("text", None)
    whole = _json_object(read_all(path)) if path.stat().st_size <= _MAX_BODY_BYTES else None
    if whole is not None:
        return ("body", whole) if _is_body(whole) else ("text", None)
    if len(lines) > 1 and _json_object(lines[1]) is not None:
        return "log", None  # a log whose first line is broken
    return "text", None


def _first_lines(path: Path, count: int) -> list[bytes]:
    """Up to `count` non-blank lines from the start of the (decompressed) file."""
    try:
        raw, stream = open_input(path)
    except InputError as exc:
        raise LintInputError(str(exc)) from None
    lines: list[bytes] = []
    try:
        for line in stream:
            if line.strip():
                lines.append(line)
                if len(lines) == count:
                    break
    except (OSError, EOFError, zlib.error) as exc:
        raise LintInputError(f"cannot read {path}: {exc}") from None
    finally:
        stream.close()
        raw.close()
    return lines


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _is_body(value: dict[str, Any]) -> bool:
    body = value.get("request", value)
    return isinstance(body, dict) and (isinstance(body.get("messages"), list) or "system" in body)


def read_all(path: Path) -> bytes:
    try:
        raw, stream = open_input(path)
    except InputError as exc:
        raise LintInputError(str(exc)) from None
    try:
        return stream.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise LintInputError(f"cannot read {path}: {exc}") from None
    finally:
        stream.close()
        raw.close()
