"""Reading request logs: bodies, envelopes, gzip, bad lines with their numbers, unusable files."""

from __future__ import annotations

import gzip
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from faregate.analyze.reader import (
    MAX_ERRORS_SHOWN,
    BadLine,
    ErrorLog,
    InputError,
    check_input,
    detect_protocol,
    parse_line,
    read_lines,
)

OPENAI_BODY: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a support assistant."},
        {"role": "user", "content": "Where is my order?"},
    ],
    "metadata": {"feature": "support"},
}
ANTHROPIC_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 256,
    "system": "You review contracts.",
    "messages": [{"role": "user", "content": "Summarise clause 4."}],
}


def line(value: Any) -> bytes:
    return orjson.dumps(value) + b"\n"


def test_a_bare_openai_body() -> None:
    record = parse_line(line(OPENAI_BODY))
    assert record.protocol == "openai"
    assert record.model == "gpt-4o-mini"
    assert record.feature == "support"  # from the body's metadata
    assert record.usage is None and record.ts is None and record.provider is None
    assert record.body["messages"][1]["content"] == "Where is my order?"


def test_a_bare_anthropic_body() -> None:
    record = parse_line(line(ANTHROPIC_BODY))
    assert record.protocol == "anthropic"
    assert record.feature == "unattributed"


def test_an_openai_envelope_with_usage_metadata_and_time() -> None:
    envelope = {
        "request": OPENAI_BODY,
        "response": {
            "choices": [{"message": {"role": "assistant", "content": "It ships today."}}],
            "usage": {
                "prompt_tokens": 1200,
                "completion_tokens": 40,
                "prompt_tokens_details": {"cached_tokens": 1024},
            },
        },
        "metadata": {"feature": "checkout", "team": "web"},
        "timestamp": "2025-03-03T10:00:00Z",
    }
    record = parse_line(line(envelope))
    assert record.feature == "checkout"  # the envelope's metadata wins over the body's
    assert record.usage is not None
    assert (record.usage.input_tokens, record.usage.cache_read_tokens, record.usage.output_tokens) == (
        1200,
        1024,
        40,
    )
    assert record.ts == datetime(2025, 3, 3, 10, tzinfo=UTC).timestamp()


def test_an_anthropic_envelope_counts_cached_tokens_in_the_input_total() -> None:
    envelope = {
        "provider": "anthropic",
        "request": ANTHROPIC_BODY,
        "response": {
            "type": "message",
            "usage": {
                "input_tokens": 50,
                "cache_read_input_tokens": 2000,
                "cache_creation_input_tokens": 100,
                "output_tokens": 70,
            },
        },
    }
    record = parse_line(line(envelope))
    assert record.protocol == "anthropic" and record.provider == "anthropic"
    assert record.usage is not None
    assert record.usage.input_tokens == 2150
    assert record.usage.cache_read_tokens == 2000 and record.usage.cache_write_tokens == 100


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1741000000, 1741000000.0),
        (1741000000.5, 1741000000.5),
        (1741000000123, 1741000000.123),  # milliseconds
        ("2025-03-03T10:00:00+01:00", datetime(2025, 3, 3, 9, tzinfo=UTC).timestamp()),
        ("2025-03-03 10:00:00", datetime(2025, 3, 3, 10, tzinfo=UTC).timestamp()),  # naive: UTC
    ],
)
def test_timestamps(value: Any, expected: float) -> None:
    record = parse_line(line({"request": OPENAI_BODY, "timestamp": value}))
    assert record.ts == pytest.approx(expected)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (line({"model": "gpt-4o"}), "no 'messages'"),
        (line({"messages": []}), "no 'model'"),
        (line({"request": "hello"}), "'request' must be"),
        (line({"request": OPENAI_BODY, "timestamp": "yesterday"}), "timestamp"),
        (line({"request": OPENAI_BODY, "timestamp": True}), "timestamp"),
        (line({"request": OPENAI_BODY, "provider": "gemini"}), "unknown provider"),
        (line({"request": OPENAI_BODY, "response": []}), "'response' must be"),
        (
            line(
                {
                    "request": OPENAI_BODY,
                    "response": {
                        "usage": {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 20}}
                    },
                }
            ),
            "cached tokens exceed",
        ),
        (b"\xff\xfe{}", "not JSON"),
    ],
)
def test_bad_lines_say_what_is_wrong(raw: bytes, message: str) -> None:
    with pytest.raises(BadLine, match=message):
        parse_line(raw)


@pytest.mark.parametrize(
    ("body", "response", "provider", "expected"),
    [
        ({"messages": [{"role": "user", "content": "hi"}], "model": "x"}, None, "anthropic", "anthropic"),
        ({"messages": [], "model": "claude-x"}, {"choices": []}, None, "openai"),
        ({"messages": [], "model": "gpt-4o"}, {"type": "message"}, None, "anthropic"),
        ({"messages": [{"role": "developer", "content": "x"}], "model": "claude-x"}, None, None, "openai"),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a"}]}]},
            None,
            None,
            "anthropic",
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}], "model": "claude-haiku-4-5"},
            None,
            None,
            "anthropic",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "model": "llama-3"}, None, None, "openai"),
    ],
)
def test_protocol_detection(
    body: dict[str, Any], response: dict[str, Any] | None, provider: str | None, expected: str
) -> None:
    assert detect_protocol(body, response, provider) == expected


def test_read_lines_counts_blank_lines_and_reads_gzip(tmp_path: Path) -> None:
    content = line(OPENAI_BODY) + b"\n   \n" + line(ANTHROPIC_BODY) + b"{}"
    plain = tmp_path / "log.jsonl"
    plain.write_bytes(content)
    packed = tmp_path / "log.jsonl.gz"
    packed.write_bytes(gzip.compress(content))
    renamed = tmp_path / "log.jsonl.bak"  # gzip is recognised by its magic bytes, not its name
    renamed.write_bytes(gzip.compress(content))
    for path in (plain, packed, renamed):
        errors = ErrorLog()
        read = [(number, raw) for number, raw, _ in read_lines(path, errors)]
        assert [number for number, _ in read] == [1, 4, 5]
        assert read[2][1] == b"{}"
        assert errors.count == 0


def test_read_lines_reports_progress_in_bytes_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(line(OPENAI_BODY) * 3)
    positions = [position for _, _, position in read_lines(path, ErrorLog())]
    assert positions[-1] == path.stat().st_size


def test_a_truncated_gzip_file_keeps_what_it_read_and_records_an_error(tmp_path: Path) -> None:
    rng = random.Random(1)  # incompressible enough that half the file holds more than a read buffer
    content = b"".join(line({**OPENAI_BODY, "n": rng.randbytes(300).hex()}) for i in range(5000))
    packed = gzip.compress(content)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    errors = ErrorLog()
    numbers = [number for number, _, _ in read_lines(path, errors)]
    assert 0 < len(numbers) < 5000
    assert numbers == list(range(1, len(numbers) + 1))
    assert errors.count == 1
    assert errors.first[0]["line"] > numbers[-1]
    assert "cannot read further" in errors.first[0]["error"]


def test_error_log_keeps_the_first_ten_and_counts_all() -> None:
    errors = ErrorLog()
    for n in range(1, 26):
        errors.add("a.jsonl", n, f"bad {n}")
    assert errors.count == 25
    assert len(errors.first) == MAX_ERRORS_SHOWN == 10
    assert errors.first[0] == {"file": "a.jsonl", "line": 1, "error": "bad 1"}
    assert errors.as_dict()["first"][-1]["line"] == 10


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"\n  \n\t\n", "is empty"),
        (gzip.compress(b""), "is empty"),
        (gzip.compress(b"\n\n"), "is empty"),
        (b"\x1f\x8bthis is not really gzip", "cannot read"),
    ],
)
def test_check_input_refuses_empty_and_unreadable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        check_input(path)


def test_check_input_refuses_missing_files_and_directories(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot read .*missing\.jsonl"):
        check_input(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="is a directory"):
        check_input(tmp_path)


def test_check_input_accepts_a_file_with_content(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n\n" + line(OPENAI_BODY))
    check_input(path)
