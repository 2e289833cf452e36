"""`faregate demo`: simulated traffic through the real gateway lands in the ledger, then gets reported."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from rich.console import Console

from faregate.demo import REPORT_FILE, WORKLOAD_FILE, run_demo
from faregate.ledger import open_store


def _analyzer_available() -> bool:
    try:
        importlib.import_module("faregate.analyze.command")
    except ImportError:
        return False
    return True


def test_demo_sends_every_request_through_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    database = f"sqlite:///{tmp_path}/ledger.db"
    console = Console(record=True, width=160)
    run_demo(requests=40, database=database, console=console)

    store = open_store(database)
    try:
        assert store.count() == 40
        rows = store.spend(["feature"], None)
    finally:
        store.close()
    spend = {row["feature"]: row["cost_usd"] for row in rows}
    assert set(spend) == {"support-faq", "doc-analysis", "chat-assistant"}
    assert all(cost > 0 for cost in spend.values())

    assert (tmp_path / WORKLOAD_FILE).read_bytes().count(b"\n") == 40
    if _analyzer_available():
        assert (tmp_path / REPORT_FILE).stat().st_size > 0
    output = console.export_text()
    assert "simulated" in output.lower()
    assert "failed:" not in output


def test_demo_starts_its_own_ledger_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`make demo` twice reports one run, not two; a ledger elsewhere is never deleted."""
    monkeypatch.chdir(tmp_path)
    own = "sqlite:///.faregate/demo.db"
    other = f"sqlite:///{tmp_path}/kept.db"
    with open(tmp_path / "out.txt", "w") as out:
        for _ in range(2):
            run_demo(requests=5, database=own, console=Console(file=out))
            run_demo(requests=5, database=other, console=Console(file=out))
    for url, expected in ((own, 5), (other, 10)):
        store = open_store(url)
        try:
            assert store.count() == expected
        finally:
            store.close()
