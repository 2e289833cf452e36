"""`run_analyze` end to end: logs and ledgers in, every format out, exit codes, workers."""

from __future__ import annotations

import gzip
import io
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from faregate.analyze.command import (
    analyze_files,
    ledger_events,
    observer_settings,
    redact_url,
    run_analyze,
)
from faregate.analyze.parallel import _Lines
from faregate.analyze.reader import ErrorLog, open_input
from faregate.analyze.report import Analyzer
from faregate.config import Config
from faregate.ledger import CostEvent, open_store
from tests.ledger import make_event

DOC = Path(__file__).resolve().parents[2] / "docs" / "analyze-report.md"
SYSTEM = "You are the support assistant for Acme Parcel. " * 60  # ~600 tokens, stable


def envelope(
    question: str,
    *,
    feature: str = "support",
    ts: float | None = None,
    history: int = 0,
    model: str = "gpt-4o",
    usage: bool = True,
) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
    for turn in range(history):
        messages.append({"role": "user", "content": f"Earlier question {turn} about parcels."})
        messages.append({"role": "assistant", "content": f"Earlier answer {turn}. " * 30})
    messages.append({"role": "user", "content": question})
    line: dict[str, Any] = {
        "request": {"model": model, "messages": messages},
        "metadata": {"feature": feature},
    }
    if usage:
        line["response"] = {
            "choices": [{"message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 900 + 200 * history, "completion_tokens": 50},
        }
    if ts is not None:
        line["timestamp"] = ts
    return line


def write_log(path: Path, lines: list[Any]) -> Path:
    data = b"".join((raw if isinstance(raw, bytes) else orjson.dumps(raw)) + b"\n" for raw in lines)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def run(files: list[Path], fmt: str = "json", **kwargs: Any) -> tuple[int, str]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=False, color_system=None)
    code = run_analyze(
        files,
        db=kwargs.get("db"),
        format=fmt,
        out=kwargs.get("out"),
        config=kwargs.get("config"),
        console=console,
    )
    return code, buffer.getvalue()


def documented_keys() -> list[str]:
    """The top-level keys in the output table of docs/analyze-report.md."""
    text = DOC.read_text().split("## Output object", 1)[1]
    return re.findall(r"^\| `(\w+)` \|", text, flags=re.MULTILINE)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    lines: list[Any] = [
        envelope("Where is my parcel?", ts=1_741_000_000),
        envelope("Where is my parcel?", ts=1_741_000_060),
        envelope("Can I change the delivery address?", ts=1_741_000_120, history=3),
        envelope("Summarise the damage claim.", feature="claims", ts=1_741_000_180),
        b"this is not json",
        {"model": "gpt-4o"},
        ["a", "list"],
    ]
    return write_log(tmp_path / "log.jsonl.gz", lines)


def test_json_report_has_every_documented_key(log: Path) -> None:
    code, out = run([log])
    assert code == 0
    report = orjson.loads(out)
    keys = documented_keys()
    assert len(keys) >= 20
    assert set(keys) <= set(report), set(keys) - set(report)
    assert report["inputs"] == [str(log)]
    assert report["requests"] == 4
    assert set(report["period"]) == {"start", "end", "days"}
    assert set(report["tokens"]) == {"system", "tools", "history", "context", "query", "overhead", "output"}
    assert set(report["history_growth"]) == {"by_turn", "crossover_turn"}
    assert set(report["history_growth"]["by_turn"][0]) == {
        "turn",
        "requests",
        "mean_history_tokens",
        "mean_other_input_tokens",
    }
    assert set(report["prefix_stability"]) == {"by_feature", "findings"}
    assert set(report["repetition"]) == {
        "queries",
        "exact_duplicates",
        "near_duplicates",
        "exact_duplicate_rate",
        "near_duplicate_rate",
    }
    assert set(report["savings"][0]) == {"strategy", "monthly_usd", "stacked_monthly_usd", "assumptions"}
    assert set(report["errors"]) == {"count", "first"}
    assert set(report["by_feature"]["support"]) == {"requests", "tokens", "share", "cost_usd"}


def test_the_report_reflects_the_log(log: Path) -> None:
    report = orjson.loads(run([log])[1])
    assert report["by_feature"]["support"]["requests"] == 3
    assert report["by_feature"]["claims"]["requests"] == 1
    assert report["tokens"]["output"] == 4 * 50
    input_tokens = sum(v for k, v in report["tokens"].items() if k != "output")
    assert input_tokens == 900 * 3 + (900 + 600)  # the providers' totals, split locally
    assert report["repetition"]["exact_duplicates"] == 1
    assert report["history_growth"]["by_turn"][-1]["turn"] == 4
    assert report["errors"]["count"] == 3
    assert [(e["line"], e["error"][:10]) for e in report["errors"]["first"]] == [
        (5, "not JSON: "),
        (6, "not a Chat"),
        (7, "expected a"),
    ]
    assert all(e["file"] == str(log) for e in report["errors"]["first"])


def test_bad_lines_beyond_ten_are_counted_but_not_listed(tmp_path: Path) -> None:
    path = write_log(tmp_path / "log.jsonl", [envelope("hi")] + [b"{"] * 15)
    report = orjson.loads(run([path])[1])
    assert report["requests"] == 1
    assert report["errors"]["count"] == 15
    assert [e["line"] for e in report["errors"]["first"]] == list(range(2, 12))


def test_no_input_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([])[0] == 2
    assert "nothing to analyze" in capsys.readouterr().err


def test_an_empty_file_is_exit_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_log(tmp_path / "good.jsonl", [envelope("hi")])
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    code, out = run([good, empty])
    assert code == 2 and out == ""
    assert f"{empty} is empty" in capsys.readouterr().err.replace("\n", "")


def test_an_unreadable_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run([tmp_path / "missing.jsonl"])[0] == 2
    assert "cannot read" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(b"\x1f\x8b\x08\x00garbage")
    assert run([corrupt])[0] == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_file_of_nothing_but_bad_lines_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_log(tmp_path / "junk.jsonl", [b"nope", b"[]"])
    assert run([path])[0] == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "no recognisable requests" in err and "2 unreadable lines" in err and "line 1" in err


def test_unknown_format_is_exit_2(log: Path) -> None:
    assert run([log], fmt="yaml")[0] == 2


def test_table_format(log: Path) -> None:
    code, out = run([log], fmt="table")
    assert code == 0
    for heading in (
        "Where the input tokens go",
        "By feature",
        "History growth",
        "Prefix stability",
        "Repeated queries",
        "Projected savings",
        "stacked total",
        "Verdict:",
        "3 lines skipped",
    ):
        assert heading in out, heading
    assert max(len(row) for row in out.splitlines()) <= 120


def test_html_format_and_out(log: Path, tmp_path: Path) -> None:
    pytest.importorskip("faregate.analyze.html")
    target = tmp_path / "report.html"
    code, out = run([log], fmt="html", out=target)
    assert code == 0 and "report written to" in out
    assert "<html" in target.read_text().lower()


def test_json_out_writes_the_file(log: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    code, _ = run([log], out=target)
    assert code == 0
    assert orjson.loads(target.read_bytes())["requests"] == 4


def test_config_prices_and_context_patterns(tmp_path: Path) -> None:
    body = {
        "model": "house-model",
        "messages": [
            {"role": "user", "content": "KB: " + "refund policy text " * 50 + "\nQ: can I return it?"}
        ],
    }
    path = write_log(tmp_path / "log.jsonl", [{"request": body, "metadata": {"feature": "kb"}}])
    config = Config.model_validate(
        {
            "prices": {"house-model": {"input_mtok": 1000, "output_mtok": 1000}},
            "features": {"kb": {"context_patterns": [r"KB: [^\n]*"]}},
        }
    )
    plain = orjson.loads(run([path])[1])
    configured = orjson.loads(run([path], config=config)[1])
    assert plain["price_unknown_requests"] == 1 and plain["cost_usd"] == 0.0
    assert configured["price_unknown_requests"] == 0
    input_tokens = sum(v for k, v in configured["tokens"].items() if k != "output")
    assert configured["cost_usd"] == pytest.approx(input_tokens * 1000 / 1e6)
    assert plain["tokens"]["context"] == 0
    assert configured["tokens"]["context"] > 100 > configured["tokens"]["query"]


# --- the ledger ----------------------------------------------------------------------------------


def event(n: int, **overrides: Any) -> CostEvent:
    """A gpt-4o ledger event with a known split: 2,000 system + 500 history + 480 query + 20 framing."""
    fields: dict[str, Any] = {
        "request_id": f"req-{n:05d}",
        "ts": 1_741_000_000.0 + n,
        "model_requested": "gpt-4o",
        "model_used": "gpt-4o",
        "input_tokens": 3000,
        "output_tokens": 100,
        "cost_nusd": 8_500_000,
        "baseline_cost_nusd": 8_500_000,
        "system_tokens": 2000,
        "history_tokens": 500,
        "query_tokens": 480,
        "overhead_tokens": 20,
    }
    return make_event(**{**fields, **overrides})


def test_a_sqlite_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = open_store(url)
    failed = event(9, status=502, error_kind="upstream_error", input_tokens=0, output_tokens=0, cost_nusd=0)
    for name in ("system_tokens", "history_tokens", "query_tokens", "overhead_tokens"):
        setattr(failed, name, 0)
    store.write_batch(
        [event(n) for n in range(5)] + [event(5, feature="search", cost_nusd=1_000_000), failed]
    )
    store.close()
    code, out = run([], db=url)
    assert code == 0
    report = orjson.loads(out)
    assert report["inputs"] == [url]
    assert report["requests"] == 6
    assert report["cost_usd"] == pytest.approx(5 * 0.0085 + 0.001)
    assert report["by_feature"]["chat"]["requests"] == 5
    assert report["by_feature"]["search"]["cost_usd"] == pytest.approx(0.001)
    assert report["tokens"]["output"] == 600
    assert sum(v for k, v in report["tokens"].items() if k != "output") == 6 * 3000
    if "system_tokens" in CostEvent.__dataclass_fields__:
        assert report["tokens"]["system"] == 6 * 2000
        assert report["share"]["history"] == pytest.approx(500 / 3000)
    assert report["repetition"]["queries"] == 0  # the ledger keeps no prompt text
    assert any("ledger input" in a for a in report["savings"][0]["assumptions"])


def test_a_ledger_that_cannot_be_opened_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run([], db="mysql://user:secret@host/db")[0] == 2
    err = capsys.readouterr().err
    assert "cannot read the ledger" in err and "secret" not in err


def test_ledger_events_pages_through_equal_timestamps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("faregate.analyze.command._LEDGER_PAGE", 3)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    store = open_store(url)
    store.write_batch([event(n, ts=1_741_000_000.0 + n // 7) for n in range(40)])
    store.close()
    ids = [e.request_id for e in ledger_events(url)]
    assert sorted(ids) == [f"req-{n:05d}" for n in range(40)]


def test_redact_url() -> None:
    assert (
        redact_url("postgresql://app:s3cret@db.internal:5432/ledger")
        == "postgresql://app@db.internal:5432/ledger"
    )
    assert redact_url("sqlite:///x.db") == "sqlite:///x.db"


# --- worker processes ------------------------------------------------------------------------------


def varied_log(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines: list[Any] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.05:
            lines.append(b"{broken")
        elif roll < 0.08:
            lines.append(b"")
        else:
            question = f"Question {rng.randint(1, 40)} about parcels " + "x" * rng.randint(0, 3000)
            lines.append(envelope(question, ts=1_741_000_000 + i * 7, history=rng.randint(0, 4)))
    return write_log(path, lines)


def analyze(files: list[Path], workers: int, block_bytes: int | None = None) -> dict[str, Any]:
    settings = observer_settings(None)
    analyzer = Analyzer(settings.price_book())
    errors = ErrorLog()
    analyze_files(files, settings, analyzer, errors, workers=workers, block_bytes=block_bytes)
    report = analyzer.build([str(f) for f in files], errors)
    report.pop("generated_at")
    return report


def test_workers_give_exactly_the_single_process_report(tmp_path: Path) -> None:
    files = [varied_log(tmp_path / "a.jsonl", 300, 1), varied_log(tmp_path / "b.jsonl.gz", 200, 2)]
    single = analyze(files, workers=1)
    assert single["requests"] > 400 and single["errors"]["count"] > 10
    assert analyze(files, workers=2, block_bytes=64 * 1024) == single
    assert analyze(files, workers=3, block_bytes=10_000_000) == single  # fewer blocks than workers


@pytest.mark.parametrize("seed", range(12))
def test_block_reader_sees_every_line_once_with_its_number(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lines = [b"x" * rng.choice([0, 1, 5, 300, 5000]) for _ in range(rng.randint(0, 400))]
    data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
    path = tmp_path / "log.jsonl"
    path.write_bytes(data)
    expected = [(i + 1, raw + b"\n") for i, raw in enumerate(data.split(b"\n")[:-1])]
    if not data.endswith(b"\n") and data.split(b"\n")[-1]:
        expected.append((len(expected) + 1, data.split(b"\n")[-1]))
    block = rng.choice([1, 7, 100, 4096, 1 << 20])
    workers = rng.choice([1, 2, 3])
    seen: list[tuple[int, bytes]] = []
    for worker in range(workers):
        raw, stream = open_input(path)
        reader = _Lines(raw, stream)
        index = seq = 0
        while True:
            if seq % workers == worker:
                seen.extend(reader.take((index + 1) * block))
            else:
                reader.skip((index + 1) * block)
            index += 1
            seq += 1
            if reader.done:
                break
        stream.close()
        raw.close()
    assert sorted(seen) == expected
