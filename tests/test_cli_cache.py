"""`faregate cache eval | stats | clear` as a user runs them: real files, real embedder, real SQLite."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from faregate.cache.entry import CachedAnswer, CacheEntry
from faregate.cache.precision import DEFAULT_THRESHOLD
from faregate.cache.store import open_cache_store
from faregate.cli import app
from faregate.ledger import open_store
from tests.ledger import make_event

runner = CliRunner()

PASSWORD = "How do I reset my password?"
JOKE = "Tell me a joke about penguins"


def write_lines(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    return write_lines(
        tmp_path / "pairs.jsonl",
        [{"a": PASSWORD, "b": PASSWORD, "duplicate": True}, {"a": PASSWORD, "b": JOKE, "duplicate": False}],
    )


def test_eval_pairs_json(pairs: Path) -> None:
    result = runner.invoke(app, ["cache", "eval", "--pairs", str(pairs), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["threshold"] == DEFAULT_THRESHOLD and report["guards"] is True
    assert (report["precision"], report["recall"], report["hit_rate"]) == (1.0, 1.0, 0.5)
    assert report["sweep"] and set(report["sweep"][0]) >= {"threshold", "precision", "recall", "hit_rate"}


def test_eval_stream_table(tmp_path: Path) -> None:
    warm = write_lines(tmp_path / "warm.jsonl", [{"text": PASSWORD, "intent": "reset"}])
    stream = write_lines(
        tmp_path / "stream.jsonl", [{"text": PASSWORD, "intent": "reset"}, {"text": JOKE, "intent": "oos"}]
    )
    result = runner.invoke(app, ["cache", "eval", "--stream", str(stream), "--warm", str(warm)])
    assert result.exit_code == 0, result.output
    assert "threshold sweep" in result.stdout and "lookup latency" in result.stdout
    assert "0 of 1" in result.stdout  # out-of-scope queries that hit


def test_eval_uses_the_features_policy(tmp_path: Path, pairs: Path) -> None:
    config = tmp_path / "faregate.yaml"
    config.write_text("features:\n  faq:\n    semantic_cache: {threshold: 0.93, guards: false}\n")
    args = ["cache", "eval", "--pairs", str(pairs), "--config", str(config), "--feature", "faq", "-f", "json"]
    report = orjson.loads(runner.invoke(app, args).stdout)
    assert (report["threshold"], report["guards"]) == (0.93, False)
    overridden = orjson.loads(runner.invoke(app, [*args, "--threshold", "0.5"]).stdout)
    assert (overridden["threshold"], overridden["guards"]) == (0.5, False)
    result = runner.invoke(app, [*args[:-2], "--feature", "chat"])
    assert result.exit_code == 2 and "'chat' has no semantic cache" in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--pairs", "missing.jsonl"], "cannot read"),
        (["--pairs", "bad.jsonl"], "bad.jsonl:2: invalid JSON"),
        (["--stream", "bad.jsonl"], "bad.jsonl:1:"),
        ([], "exactly one of --pairs FILE or --stream FILE"),
        (["--pairs", "pairs.jsonl", "--stream", "pairs.jsonl"], "exactly one"),
        (["--pairs", "pairs.jsonl", "--warm", "pairs.jsonl"], "--warm goes with --stream"),
    ],
)
def test_eval_bad_input_exits_2(tmp_path: Path, pairs: Path, args: list[str], says: str) -> None:
    (tmp_path / "bad.jsonl").write_text('{"a": "x", "b": "y", "duplicate": true}\n{"a": \n')
    args = [str(tmp_path / a) if a.endswith(".jsonl") else a for a in args]
    result = runner.invoke(app, ["cache", "eval", *args])
    assert result.exit_code == 2
    assert says in result.stderr
    assert result.stdout == ""


def entry(feature: str, template: str) -> CacheEntry:
    now = time.time()
    answer = CachedAnswer("openai", "gpt-4o-mini", "Open Settings.", "stop", 100, 10, 5_000)
    vector = np.zeros(384, dtype=np.float32)
    vector[0] = 1.0
    return CacheEntry(
        secrets.randbits(63), "scope", secrets.token_hex(8), "tenant", feature, template, PASSWORD,
        answer, vector, now, now + 3600,
    )  # fmt: skip


def test_stats_on_a_fresh_database(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/fresh.db"
    result = runner.invoke(app, ["cache", "stats", "--db", db, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == {"features": []}
    table = runner.invoke(app, ["cache", "stats", "--db", db])
    assert table.exit_code == 0 and "No cache entries" in table.stdout


def test_stats_merges_the_store_and_the_ledger(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/both.db"
    store = open_cache_store(db)
    store.put(entry("faq", "v1"))
    store.put(entry("faq", "v2"))
    store.raise_tightening("faq", 0.02, 0.0)  # verification raised faq's threshold by two steps
    store.close()
    ledger = open_store(db)
    now = time.time()
    ledger.write_batch(
        [
            make_event(
                feature="faq", ts=now, cache_status="semantic-hit", cost_nusd=0, baseline_cost_nusd=5_000
            ),
            make_event(feature="faq", ts=now, cache_status="miss"),
            make_event(feature="faq", ts=now, cache_status="verify", cache_verified=True),
            make_event(feature="chat", ts=now, cache_status="miss"),
        ]
    )
    ledger.close()
    result = runner.invoke(app, ["cache", "stats", "--db", db, "--since", "1h", "--format", "json"])
    assert result.exit_code == 0, result.output
    features = {f["feature"]: f for f in orjson.loads(result.stdout)["features"]}
    faq, chat = features["faq"], features["chat"]
    assert (faq["entries"], faq["hits"], faq["hit_rate"]) == (2, 0, 0.5)
    assert faq["requests"]["semantic-hit"] == 1 and faq["saving_usd"] == pytest.approx(5e-6)
    assert faq["verification"]["verified"] == 1 and faq["verification"]["precision"] == 1.0
    assert (chat["entries"], chat["requests"]["miss"]) == (0, 1)
    assert faq["threshold_tightened"] == 0.02 and "threshold_tightened" not in chat
    table = runner.invoke(app, ["cache", "stats", "--db", db])
    assert table.exit_code == 0 and "faq" in table.stdout
    assert "(20.7%-100.0%, n=1)" in " ".join(table.stdout.split()), table.stdout  # the 95% interval
    assert "+0.02" in table.stdout


def test_clear_needs_a_filter_or_all(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/cache.db"
    store = open_cache_store(db)
    for feature, template in [("faq", "v1"), ("faq", "v3"), ("faq", "v3"), ("chat", "v3")]:
        store.put(entry(feature, template))
    store.close()

    refused = runner.invoke(app, ["cache", "clear", "--db", db])
    assert refused.exit_code == 2 and "--all" in refused.stderr

    one = runner.invoke(app, ["cache", "clear", "--db", db, "--feature", "faq", "--template", "v3"])
    assert one.exit_code == 0 and "deleted 2 cache entries of feature 'faq' and template 'v3'" in one.stdout
    rest = runner.invoke(app, ["cache", "clear", "--db", db, "--all"])
    assert rest.exit_code == 0 and "deleted 2 cache entries" in rest.stdout
    store = open_cache_store(db)
    assert store.stats() == []
    store.close()


def test_clear_rejects_an_unknown_database_scheme() -> None:
    result = runner.invoke(app, ["cache", "clear", "--db", "mysql://x/y", "--all"])
    assert result.exit_code == 2 and "unsupported cache database URL scheme" in result.stderr
