"""`faregate router train | eval` end to end, with the real embedding model, on synthetic outcomes."""

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from faregate.routing.artifact import Router, load_router, save_router
from faregate.routing.command import router_app
from tests.routing.helpers import FRONTIER, SMALL, outcome_rows, write_rows

TIERS = f"small={SMALL},frontier={FRONTIER}"
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    tmp = tmp_path_factory.mktemp("router")
    data = write_rows(tmp / "train.jsonl", outcome_rows(300, seed=1))
    out = tmp / "router.npz"
    result = runner.invoke(
        router_app,
        ["train", "--data", str(data), "--tiers", TIERS, "--out", str(out), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    return out, orjson.loads(result.stdout)


def test_train_reports_and_writes_a_router(trained: tuple[Path, dict[str, object]]) -> None:
    out, report = trained
    assert out.is_file()
    assert report["rows"] == 300
    assert report["tiers"] == {"small": SMALL, "frontier": FRONTIER}
    assert report["target"] == {"quality": 0.95}
    held = report["heldout"]
    assert isinstance(held, dict)
    assert held["apgr"]["small"] > 0.65
    assert held["quality_vs_frontier"] >= 0.95
    assert report["costs"] == "data"
    # int8 MiniLM by default, recorded in the file for whoever routes with it
    assert report["embedding"] == "all-MiniLM-L6-v2-int8"
    router = load_router(out)
    assert router.embedding_model == "all-MiniLM-L6-v2-int8" and router.embedding_int8


def test_train_table_is_a_few_lines(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "train.jsonl", outcome_rows(200, seed=2, costs=False))
    result = runner.invoke(
        router_app,
        [
            "train",
            "--data",
            str(data),
            "--data",
            str(data),
            "--tiers",
            TIERS,
            "--target-frontier-share",
            "0.3",
            "--out",
            str(tmp_path / "r.npz"),
        ],
    )
    # no "costs" and models genai-prices does not know: calibrated on shares, and said so
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert 4 <= len(lines) <= 6
    assert lines[0].startswith("trained on 400 rows")
    assert "frontier share 30.0%" in result.stdout
    assert "note: no price for model" in result.stdout


def test_eval_on_unseen_rows(trained: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    out, _ = trained
    data = write_rows(tmp_path / "test.jsonl", outcome_rows(200, seed=7))
    result = runner.invoke(
        router_app, ["eval", "--data", str(data), "--router", str(out), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["apgr"] > 0.65
    assert report["embedding"] == "all-MiniLM-L6-v2-int8"  # as the router was trained
    assert 0.0 <= report["cpt50"] <= report["cpt80"] <= 1.0
    assert report["quality_vs_frontier"] > 0.85
    assert report["cost_vs_frontier"] < 0.8
    assert set(report["per_category"]) == {"easy", "hard"}
    assert report["per_category"]["hard"]["frontier_share"] > report["per_category"]["easy"]["frontier_share"]

    table = runner.invoke(router_app, ["eval", "--data", str(data), "--router", str(out)])
    assert table.exit_code == 0, table.output
    assert "APGR" in table.stdout and "per category" in table.stdout


def test_train_and_eval_with_float32_embeddings(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "train.jsonl", outcome_rows(200, seed=4))
    out = tmp_path / "f32.npz"
    trained = runner.invoke(
        router_app,
        ["train", "--data", str(data), "--tiers", TIERS, "--out", str(out), "--embedding", "float32"],
    )
    assert trained.exit_code == 0, trained.output
    assert "embeddings all-MiniLM-L6-v2" in trained.stdout.splitlines()[0]
    router = load_router(out)
    assert router.embedding_model == "all-MiniLM-L6-v2" and not router.embedding_int8
    test = write_rows(tmp_path / "test.jsonl", outcome_rows(100, seed=8))
    result = runner.invoke(router_app, ["eval", "--data", str(test), "--router", str(out), "-f", "json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["embedding"] == "all-MiniLM-L6-v2" and report["apgr"] > 0.65
    assert "note:" not in result.stderr

    # a router trained on some other model's vectors: evaluated with float32 MiniLM, and said so
    other = tmp_path / "other.npz"
    save_router(
        other,
        Router(router.tiers, router.classifier, router.policy, {"embedding": {"model": "e5", "dim": 384}}),
    )
    result = runner.invoke(router_app, ["eval", "--data", str(test), "--router", str(other), "-f", "json"])
    assert result.exit_code == 0, result.output
    assert "note: the router was trained on e5 embeddings; evaluating with all-MiniLM-L6-v2" in " ".join(
        result.stderr.split()
    )
    assert orjson.loads(result.stdout)["embedding"] == "all-MiniLM-L6-v2"


def test_eval_three_tiers(tmp_path: Path) -> None:
    rows = outcome_rows(240, seed=3)
    for row in rows:
        scores = row["scores"]
        assert isinstance(scores, dict)
        scores["medium-model"] = max(
            scores[SMALL], 1.0 if row["category"] == "hard" and hash(str(row)) % 2 else 0.0
        )
        costs = row["costs"]
        assert isinstance(costs, dict)
        costs["medium-model"] = 0.0005
    data = write_rows(tmp_path / "three.jsonl", rows)
    tiers = f"small={SMALL},medium=medium-model,frontier={FRONTIER}"
    out = tmp_path / "three.npz"
    trained = runner.invoke(router_app, ["train", "--data", str(data), "--tiers", tiers, "--out", str(out)])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(
        router_app, ["eval", "--data", str(data), "--router", str(out), "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert 0.0 < report["cost_at_95"] <= 1.0
    curve = report["curve"]
    assert curve[-1]["cost_vs_frontier"] == 1.0 and curve[-1]["quality_vs_frontier"] == 1.0
    assert set(report["apgr_vs_frontier"]) == {"small", "medium"}


def _fails(args: list[str], message: str) -> None:
    result = runner.invoke(router_app, args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()), result.stderr


def test_bad_training_input_exits_2(tmp_path: Path) -> None:
    out = str(tmp_path / "r.npz")
    few = write_rows(tmp_path / "few.jsonl", outcome_rows(49))
    _fails(
        ["train", "--data", str(few), "--tiers", TIERS, "--out", out], "49 rows: training needs at least 50"
    )

    data = write_rows(tmp_path / "ok.jsonl", outcome_rows(80))
    _fails(
        ["train", "--data", str(data), "--tiers", f"small=nobody,frontier={FRONTIER}", "--out", out],
        "unknown model(s) nobody",
    )
    _fails(
        ["train", "--data", str(data), "--tiers", f"frontier={FRONTIER}", "--out", out], "at least two tiers"
    )

    same = outcome_rows(80)
    for row in same:
        scores = row["scores"]
        assert isinstance(scores, dict)
        scores[SMALL] = scores[FRONTIER]
    agree = write_rows(tmp_path / "agree.jsonl", same)
    _fails(
        ["train", "--data", str(agree), "--tiers", TIERS, "--out", out],
        "no row where the tiers' scores differ",
    )

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "x", "scores": {}}\nnot json\n')
    _fails(["train", "--data", str(broken), "--tiers", TIERS, "--out", out], "broken.jsonl:2")
    _fails(
        ["train", "--data", str(tmp_path / "absent.jsonl"), "--tiers", TIERS, "--out", out],
        "absent.jsonl: cannot read",
    )
    _fails(
        [
            "train",
            "--data",
            str(data),
            "--tiers",
            TIERS,
            "--out",
            out,
            "--target-quality",
            "0.9",
            "--target-frontier-share",
            "0.2",
        ],
        "not both",
    )
    assert not Path(out).exists()


def test_eval_with_a_broken_router_exits_2(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "test.jsonl", outcome_rows(60))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"\x00" * 100)
    _fails(
        ["eval", "--data", str(data), "--router", str(corrupt)], f"router file {corrupt}: not a router file"
    )
    _fails(["eval", "--data", str(data), "--router", str(tmp_path / "gone.npz")], "gone.npz: no such file")


def test_eval_with_models_the_router_does_not_know_exits_2(
    trained: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    out, _ = trained
    rows = outcome_rows(60)
    for row in rows:
        row["scores"] = {"other": 1.0, FRONTIER: 1.0}
    data = write_rows(tmp_path / "other.jsonl", rows)
    _fails(["eval", "--data", str(data), "--router", str(out)], f"unknown model(s) {SMALL}")
