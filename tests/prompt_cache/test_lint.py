"""`faregate lint` as a user runs it: prompt files, request bodies and request logs, exit codes, costs."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from faregate.cli import app
from faregate.tokens import count_text

runner = CliRunner()

SONNET = "claude-sonnet-4-5"
# genai-prices: claude-sonnet-4-5 input $3/MTok, cache read $0.30/MTok, so a miss costs $2.70/MTok more
SONNET_MISS_PER_TOKEN = (Decimal("3") - Decimal("0.30")) / 1_000_000
STAMP = "2025-03-04T10:15:00Z"
RULES = (
    "Answer questions about invoices, refunds and plans. Quote the refund policy section when you use it. "
    "Never promise a refund above the plan price. Escalate chargebacks to a human. " * 4
)
PROMPT = f"You are the billing assistant for Acme.\nCurrent time: {STAMP}\n{RULES}\n"


def lint(*args: str) -> Any:
    return runner.invoke(app, ["lint", *args])


def findings_of(result: Any) -> Any:
    return orjson.loads(result.stdout)


# --- prompt files -------------------------------------------------------------------------------------


def test_prompt_file_with_a_timestamp_exits_1_with_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "prompt.md"
    path.write_text(PROMPT, encoding="utf-8")
    result = lint(str(path), "--format", "json")
    assert result.exit_code == 1, result.output
    report = findings_of(result)
    assert report["file"] == str(path)
    assert report["findings"] == [{"kind": "timestamp", "text": STAMP, "location": f"{path}:2:15"}]


def test_prompt_file_cost_is_the_rest_of_the_prompt_at_the_miss_price(tmp_path: Path) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text(PROMPT, encoding="utf-8")
    result = lint(str(path), "--format", "json", "--model", SONNET, "--requests-per-day", "1000")
    assert result.exit_code == 1, result.output
    report = findings_of(result)
    (finding,) = report["findings"]
    rest = PROMPT[PROMPT.index(STAMP) :]
    expected = count_text(SONNET, rest) * SONNET_MISS_PER_TOKEN * 1000 * 30
    assert expected > 0
    assert finding["monthly_cost_usd"] == pytest.approx(float(expected), abs=1e-6)
    assert (report["model"], report["requests_per_day"]) == (SONNET, 1000)


def test_a_date_is_priced_as_one_miss_a_day(tmp_path: Path) -> None:
    text = f"Today is Tuesday, March 4, 2025.\n{RULES}"
    path = tmp_path / "prompt.txt"
    path.write_text(text, encoding="utf-8")
    result = lint(str(path), "-f", "json", "--model", SONNET, "--requests-per-day", "1000")
    (finding,) = findings_of(result)["findings"]
    assert finding["kind"] == "date" and finding["location"] == f"{path}:1:10"
    expected = count_text(SONNET, text[text.index("Tuesday") :]) * SONNET_MISS_PER_TOKEN * 30
    assert finding["monthly_cost_usd"] == pytest.approx(float(expected), abs=1e-6)


def test_columns_count_characters_on_later_lines(tmp_path: Path) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text(f"Ünïcödé first line\r\n\r\n    request id: {STAMP} - and more\n", encoding="utf-8")
    (finding,) = findings_of(lint(str(path), "-f", "json"))["findings"]
    assert finding["location"] == f"{path}:3:17"


def test_unknown_model_omits_the_cost_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "prompt.txt"
    path.write_text(PROMPT, encoding="utf-8")
    result = lint(str(path), "-f", "json", "--model", "house-model-x", "--requests-per-day", "10")
    report = findings_of(result)
    assert "monthly_cost_usd" not in report["findings"][0]
    assert report["unpriced_models"] == ["house-model-x"]


def test_config_price_overrides_apply(tmp_path: Path) -> None:
    config = tmp_path / "faregate.yaml"
    config.write_text(
        "prices:\n  house-model:\n    input_mtok: 10\n    output_mtok: 10\n    cache_read_mtok: 1\n",
        encoding="utf-8",
    )
    path = tmp_path / "prompt.txt"
    path.write_text(PROMPT, encoding="utf-8")
    args = ["-f", "json", "--model", "house-model", "--requests-per-day", "10", "--config", str(config)]
    (finding,) = findings_of(lint(str(path), *args))["findings"]
    rest = PROMPT[PROMPT.index(STAMP) :]
    expected = count_text("house-model", rest) * Decimal(9) / 1_000_000 * 10 * 30
    assert finding["monthly_cost_usd"] == pytest.approx(float(expected), abs=1e-6)


def test_clean_prompt_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "prompt.md"
    path.write_text(f"You are the billing assistant for Acme.\n{RULES}", encoding="utf-8")
    result = lint(str(path), "-f", "json")
    assert result.exit_code == 0, result.output
    assert findings_of(result)["findings"] == []
    table = lint(str(path))
    assert table.exit_code == 0 and "No cache breakers found" in table.stdout


@pytest.mark.parametrize("content", [None, b"", b"  \n\n"])
def test_missing_or_empty_file_exits_2(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "prompt.md"
    if content is not None:
        path.write_bytes(content)
    result = lint(str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert str(path) in result.stderr and "error:" in result.stderr


def test_binary_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\xff\xfe\x00binary\x80")
    result = lint(str(path))
    assert result.exit_code == 2 and "not UTF-8" in result.stderr


# --- a request body -----------------------------------------------------------------------------------

UUID = "3f2b8c1e-9d4a-4b7e-8f1a-2c3d4e5f6a7b"


def test_body_findings_are_prefixed_by_the_file_and_priced_with_the_body_model(tmp_path: Path) -> None:
    developer = f"Session {UUID}. {RULES}"
    tool = {"type": "function", "function": {"name": "refund", "description": "Refund an invoice."}}
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "developer", "content": developer}, {"role": "user", "content": "hi"}],
        "tools": [tool],
    }
    path = tmp_path / "request.json"
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))  # a body over many lines
    result = lint(str(path), "-f", "json", "--requests-per-day", "100")
    assert result.exit_code == 1, result.output
    (finding,) = findings_of(result)["findings"]
    assert (finding["kind"], finding["text"], finding["location"]) == (
        "uuid",
        UUID,
        f"{path}:messages[0]:8-44",
    )
    # OpenAI renders the tools after the system messages: a change in the developer message re-bills them too
    tokens = count_text("gpt-4o", developer[8:]) + count_text("gpt-4o", orjson.dumps(tool).decode())
    # genai-prices: gpt-4o input $2.50/MTok, cached input $1.25/MTok
    expected = tokens * (Decimal("2.50") - Decimal("1.25")) / 1_000_000 * 100 * 30
    assert finding["monthly_cost_usd"] == pytest.approx(float(expected), abs=1e-6)


def test_single_line_anthropic_body_without_cost(tmp_path: Path) -> None:
    body = {"model": SONNET, "system": [{"type": "text", "text": f"Now: {STAMP}"}], "messages": []}
    path = tmp_path / "request.json"
    path.write_bytes(orjson.dumps(body))
    (finding,) = findings_of(lint(str(path), "-f", "json"))["findings"]
    assert finding == {"kind": "timestamp", "text": STAMP, "location": f"{path}:system[0]:5-25"}


# --- a request log ------------------------------------------------------------------------------------

BASE = datetime(2025, 3, 3, tzinfo=UTC).timestamp()
STEP = 5400  # 1.5 hours: 30 requests span 43.5 hours
TOOLS = [
    {"name": name, "description": f"{name.title()} an invoice.", "input_schema": {"type": "object"}}
    for name in ("lookup", "refund", "escalate")
]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _system(ts: float) -> str:
    return f"You are the billing assistant for Acme.\nCurrent time: {_iso(ts)}\n{RULES}"


def _tools(i: int) -> list[dict[str, Any]]:
    return TOOLS if (i // 10) % 2 == 0 else TOOLS[::-1]  # 10 in one order, 10 reversed, 10 again


def _log_lines(count: int = 30) -> list[bytes]:
    lines = []
    for i in range(count):
        ts = BASE + i * STEP
        body = {
            "model": SONNET,
            "system": _system(ts),
            "tools": _tools(i),
            "messages": [{"role": "user", "content": f"question {i}"}],
        }
        envelope = {"request": body, "metadata": {"feature": "billing"}, "timestamp": _iso(ts)}
        lines.append(orjson.dumps(envelope))
    return lines


def _write_log(tmp_path: Path, lines: list[bytes], name: str = "requests.jsonl") -> Path:
    path = tmp_path / name
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def _tool_tokens() -> int:
    return sum(count_text(SONNET, orjson.dumps(tool).decode()) for tool in TOOLS)


def test_log_finds_timestamp_and_tool_order_with_costs_scaled_to_30_days(tmp_path: Path) -> None:
    path = _write_log(tmp_path, _log_lines())
    result = lint(str(path), "-f", "json")
    assert result.exit_code == 1, result.output
    report = findings_of(result)
    assert report["requests"] == 30
    assert report["errors"]["count"] == 0
    assert report["period_days"] == pytest.approx(43.5 / 24)
    assert "assumed_period_days" not in report
    by_kind = {f["kind"]: f for f in report["findings"]}
    assert set(by_kind) == {"timestamp", "tool_order"}
    scale = Decimal(30) / (Decimal(29 * STEP) / 86400)

    stamp = by_kind["timestamp"]
    assert (stamp["feature"], stamp["location"], stamp["text"]) == ("billing", "system", _iso(BASE))
    assert (stamp["requests"], stamp["cache_misses"]) == (30, 29)  # the first request is a cold cache anyway
    # Anthropic caches tools before system: a timestamp in the system prompt re-bills the rest of it only
    tokens = 0
    for i in range(1, 30):
        system = _system(BASE + i * STEP)
        tokens += count_text(SONNET, system[system.index("Current time: ") + 14 :])
    assert stamp["monthly_cost_usd"] == pytest.approx(float(tokens * SONNET_MISS_PER_TOKEN * scale), abs=1e-6)

    order = by_kind["tool_order"]
    assert (order["feature"], order["location"], order["text"]) == (
        "billing",
        "tools",
        "2 orders of the same 3 tools",
    )
    assert (order["requests"], order["cache_misses"]) == (30, 2)  # the order changed at requests 10 and 20
    # a new tool order re-bills everything from the tools on: the tools and the system prompt
    tokens = sum(_tool_tokens() + count_text(SONNET, _system(BASE + i * STEP)) for i in (10, 20))
    assert order["monthly_cost_usd"] == pytest.approx(float(tokens * SONNET_MISS_PER_TOKEN * scale), abs=1e-6)
    assert report["findings"][0]["kind"] == "timestamp"  # the costlier first


def test_log_bad_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    lines = _log_lines(5)
    lines[1:1] = [b"not json", b'{"messages": "nope"}']
    path = _write_log(tmp_path, lines, "requests.jsonl.gz")
    result = lint(str(path), "-f", "json")
    assert result.exit_code == 1, result.output
    report = findings_of(result)
    assert report["requests"] == 5
    assert report["errors"]["count"] == 2
    assert [e["line"] for e in report["errors"]["first"]] == [2, 3]


def test_log_without_recognisable_requests_exits_2(tmp_path: Path) -> None:
    path = _write_log(tmp_path, [b'{"messages": "nope"}', b'{"model": "x"}'])
    result = lint(str(path))
    assert result.exit_code == 2
    assert "no recognisable requests" in result.stderr and "2 unreadable lines" in result.stderr


def test_short_log_is_taken_as_one_day(tmp_path: Path) -> None:
    systems = [f"Now: {_iso(BASE + i)}\n{RULES}" for i in range(4)]
    bodies = [{"model": SONNET, "system": s, "messages": [{"role": "user", "content": "q"}]} for s in systems]
    path = _write_log(tmp_path, [orjson.dumps(b) for b in bodies])  # bare bodies: no timestamps
    report = findings_of(lint(str(path), "-f", "json"))
    assert report["assumed_period_days"] == 1 and "period_days" not in report
    (finding,) = report["findings"]
    assert (finding["feature"], finding["requests"], finding["cache_misses"]) == ("unattributed", 4, 3)
    tokens = sum(count_text(SONNET, system[5:]) for system in systems[1:])
    assert finding["monthly_cost_usd"] == pytest.approx(float(tokens * SONNET_MISS_PER_TOKEN * 30), abs=1e-6)


def test_log_model_option_reprices_every_record(tmp_path: Path) -> None:
    lines = []
    for line in _log_lines():
        envelope = orjson.loads(line)
        envelope["request"]["model"] = "billing-alias"  # a name only the team's router knows
        envelope["provider"] = "anthropic"
        lines.append(orjson.dumps(envelope))
    path = _write_log(tmp_path, lines)
    logged = findings_of(lint(str(path), "-f", "json"))
    assert logged["unpriced_models"] == ["billing-alias"]
    assert all("monthly_cost_usd" not in f for f in logged["findings"])
    repriced = findings_of(lint(str(path), "-f", "json", "--model", "gpt-4o"))  # the hint no longer applies
    assert "unpriced_models" not in repriced
    assert all(f["monthly_cost_usd"] > 0 for f in repriced["findings"])


def test_log_requests_per_day_sets_the_period(tmp_path: Path) -> None:
    path = _write_log(tmp_path, _log_lines())
    report = findings_of(lint(str(path), "-f", "json", "--requests-per-day", "60"))
    assert report["period_days"] == 0.5


def test_a_stable_unsorted_json_costs_nothing_in_a_log(tmp_path: Path) -> None:
    system = f'Defaults: {{"zone": "eu", "account": "main"}}\n{RULES}'
    body = {"model": SONNET, "system": system, "messages": [{"role": "user", "content": "q"}]}
    path = _write_log(tmp_path, [orjson.dumps(body)] * 3)
    (finding,) = findings_of(lint(str(path), "-f", "json"))["findings"]
    assert (finding["kind"], finding["cache_misses"], finding["monthly_cost_usd"]) == (
        "unsorted_json",
        0,
        0.0,
    )


def test_table_format_renders_findings_and_why(tmp_path: Path) -> None:
    path = _write_log(tmp_path, _log_lines())
    result = lint(str(path))
    assert result.exit_code == 1, result.output
    out = result.stdout
    for expected in ("timestamp", "tool_order", "billing", "2 orders of the same 3 tools", "1.81 days"):
        assert expected in out
    assert f"Prompt-cache breakers in {path}" in out
    assert "changes on every request" in out and "the same tools in another order" in out
    prompt = tmp_path / "prompt.md"
    prompt.write_text(PROMPT, encoding="utf-8")
    table = lint(str(prompt), "--model", SONNET, "--requests-per-day", "1000")
    assert table.exit_code == 1 and f"{prompt.name}:2:15" in table.stdout and "$" in table.stdout
