"""Request logs in, `Record`s out: JSON Lines (plain or gzipped) of request bodies or envelopes.

A line is one of
- an OpenAI Chat Completions body or an Anthropic Messages body, or
- an envelope `{"request": BODY, "response"?: BODY, "metadata"?: {...}, "timestamp"?: ..., "provider"?: ...}`.

A line that is not JSON, or not a recognisable request, is counted in an `ErrorLog` (the first ten with
their file and line number) and skipped: one bad line never stops the analysis. A file that is empty or
cannot be read at all is an `InputError`, which the command reports with exit code 2.

Reading is split in two so the expensive part can run in worker processes: `read_lines` streams raw
lines (and how many bytes of the file it has consumed, for the progress bar), `parse_line` turns one
line into a `Record`.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from faregate.call import UNATTRIBUTED, Protocol, Usage
from faregate.providers.anthropic import usage_from_anthropic
from faregate.providers.openai import usage_from_openai

__all__ = [
    "MAX_ERRORS_SHOWN",
    "BadLine",
    "ErrorLog",
    "InputError",
    "Record",
    "check_input",
    "open_input",
    "parse_line",
    "read_lines",
]

MAX_ERRORS_SHOWN = 10
_GZIP_MAGIC = b"\x1f\x8b"
_PEEK_BYTES = 1 << 20  # how much an empty-file check may read before it finds a non-blank byte
_FEATURE_KEYS = ("feature", "faregate_feature")
_MS_THRESHOLD = 1e11  # unix times above this are milliseconds (1e11 s is the year 5138)


class InputError(Exception):
    """A whole input is unusable: missing, unreadable, not gzip although it says so, or empty."""


class BadLine(ValueError):
    """One line is not JSON or not a recognisable request; the message says why."""


@dataclass
class ErrorLog:
    """Bad lines: how many, and the first `MAX_ERRORS_SHOWN` with where they are and what is wrong."""

    count: int = 0
    first: list[dict[str, Any]] = field(default_factory=list)

    def add(self, file: str, line: int, error: str) -> None:
        self.count += 1
        if len(self.first) < MAX_ERRORS_SHOWN:
            self.first.append({"file": file, "line": line, "error": error})

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "first": list(self.first)}


@dataclass(slots=True)
class Record:
    """One request from a log, with what the log knows about its outcome and attribution."""

    protocol: Protocol
    model: str
    body: dict[str, Any]
    usage: Usage | None  # the provider's reported usage, when the log has the response
    feature: str
    ts: float | None  # unix seconds
    provider: str | None  # the envelope's provider hint ("openai" | "anthropic"), if any


def open_input(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(raw file, decompressed stream). Gzip is recognised by its magic bytes, whatever the name."""
    try:
        raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        magic = raw.read(2)
        raw.seek(0)
    except OSError as exc:
        raw.close()
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if magic == _GZIP_MAGIC:
        stream: BinaryIO = io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), 1 << 20)
        return raw, stream
    return raw, raw


def check_input(path: Path) -> None:
    """Raise `InputError` unless `path` is a readable file holding at least one non-blank byte.

    Run on every input before the analysis starts, so a typo in the last file name does not cost
    the time spent on the first ones.
    """
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a request log")
    raw, stream = open_input(path)
    try:
        seen = 0
        while seen < _PEEK_BYTES:
            chunk = stream.read(64 * 1024)
            if not chunk:
                raise InputError(f"{path} is empty: no requests to analyze")
            if chunk.strip():
                return
            seen += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read {path}: {_describe(exc)}") from None
    finally:
        stream.close()
        raw.close()


def read_lines(path: Path, errors: ErrorLog) -> Iterator[tuple[int, bytes, int]]:
    """(line number, raw line, bytes of the file consumed so far) for each non-blank line.

    A gzip stream that breaks off (a log still being written, a truncated copy) ends the file with
    one error in `errors` instead of stopping the analysis.
    """
    raw, stream = open_input(path)
    number = 0
    try:
        try:
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield number, line, raw.tell()
        except (OSError, EOFError, zlib.error) as exc:
            errors.add(str(path), number + 1, f"cannot read further: {_describe(exc)}")
    finally:
        stream.close()
        raw.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def parse_line(line: bytes) -> Record:
    """The `Record` in one log line, or `BadLine` saying what is wrong with it."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        # orjson says "line 1 column 7 (char 6)": within the line, which would read as the file's line 1
        raise BadLine(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise BadLine(f"expected a JSON object, got {type(data).__name__}")
    envelope: dict[str, Any] = {}
    body: Any = data
    if "request" in data:
        envelope, body = data, data["request"]
        if not isinstance(body, dict):
            raise BadLine("'request' must be a request body (a JSON object)")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise BadLine("not a Chat Completions or Messages request: no 'messages' list")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise BadLine("the request names no 'model'")
    response = envelope.get("response")
    if response is not None and not isinstance(response, dict):
        raise BadLine("'response' must be a JSON object")
    provider = envelope.get("provider")
    if provider is not None and provider not in ("openai", "anthropic"):
        raise BadLine(f"unknown provider {provider!r}: expected 'openai' or 'anthropic'")
    return Record(
        protocol=detect_protocol(body, response, provider),
        model=model.strip(),
        body=body,
        usage=_usage(response),
        feature=_feature(envelope.get("metadata"), body.get("metadata")),
        ts=_timestamp(envelope.get("timestamp")),
        provider=provider,
    )


def detect_protocol(body: dict[str, Any], response: dict[str, Any] | None, provider: str | None) -> Protocol:
    """Which wire format a body is in: the envelope's provider, then the response, then the body.

    Messages bodies put the system prompt at the top level and use typed content blocks
    (`tool_use`, `tool_result`, `image` with a `source`); Chat Completions bodies put it in a
    `system` or `developer` message and have `tool` messages and `image_url` parts.
    """
    if provider in ("openai", "anthropic"):
        return "anthropic" if provider == "anthropic" else "openai"
    if response is not None:
        if response.get("type") == "message" or "stop_reason" in response:
            return "anthropic"
        if "choices" in response:
            return "openai"
    if "system" in body:
        return "anthropic"
    for message in body["messages"]:
        if not isinstance(message, dict):
            continue
        if message.get("role") in ("system", "developer", "tool") or "tool_calls" in message:
            return "openai"
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in ("tool_use", "tool_result", "image", "document", "thinking"):
                    return "anthropic"
                if kind in ("image_url", "input_audio", "file"):
                    return "openai"
    return "anthropic" if str(body.get("model", "")).lower().startswith("claude") else "openai"


def _usage(response: dict[str, Any] | None) -> Usage | None:
    if response is None:
        return None
    raw = response.get("usage")
    if not isinstance(raw, dict):
        return None
    usage = usage_from_openai(raw) if "prompt_tokens" in raw else usage_from_anthropic(raw)
    if usage is None or usage.input_tokens <= 0:
        return None
    if usage.cache_read_tokens + usage.cache_write_tokens > usage.input_tokens:
        raise BadLine("response.usage: cached tokens exceed the input total")
    if usage.reasoning_tokens > usage.output_tokens:
        raise BadLine("response.usage: reasoning tokens exceed the output total")
    return usage


def _feature(*metadata: Any) -> str:
    """The envelope's metadata first, then the body's; `unattributed` when neither names a feature."""
    for meta in metadata:
        if not isinstance(meta, dict):
            continue
        for key in _FEATURE_KEYS:
            value = meta.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
                return str(value).strip()[:256]
    return UNATTRIBUTED


def _timestamp(value: Any) -> float | None:
    """ISO-8601 (naive means UTC) or unix seconds (milliseconds are recognised by their size)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadLine("timestamp: expected an ISO-8601 string or unix seconds")
    if isinstance(value, int | float):
        seconds = float(value)
        return seconds / 1000 if seconds > _MS_THRESHOLD else seconds
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BadLine(f"timestamp: {value[:40]!r} is not ISO-8601") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    raise BadLine("timestamp: expected an ISO-8601 string or unix seconds")
