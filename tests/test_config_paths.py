"""Paths the config points the gateway at (routing.router, cache.model_dir, ledger.journal_dir, the
SQLite files): relative ones may not climb out of the working directory with `..`, none may hold a
NUL byte, absolute ones are the operator's explicit choice, and a missing file the gateway must read
stops the start with a ConfigError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from faregate.config import Config, load_config, path_problem
from faregate.errors import ConfigError

TIERS = "tiers: {small: gpt-4o-mini, frontier: gpt-4o}"


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Config:
    path = tmp_path / "faregate.yaml"
    path.write_text("providers: {openai: {type: openai}}\n" + text)
    return load_config(path, environ=environ or {})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("routing: {router: ../../etc/router.npz}", "routing.router"),
        ("cache: {model_dir: models/../../outside}", "cache.model_dir"),
        ("ledger: {journal_dir: ../journal}", "ledger.journal_dir"),
        ("database: sqlite:///../ledger.db", "database"),
        ("cache: {database: 'sqlite:///a/../../cache.db'}", "cache.database"),
    ],
)
def test_relative_paths_may_not_climb_out(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert f"{key}: the relative path" in str(caught.value)
    assert "'..'" in str(caught.value)


def test_the_environment_is_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ledger\.journal_dir: the relative path"):
        load(tmp_path, "", environ={"FAREGATE_LEDGER__JOURNAL_DIR": "../../var"})


@pytest.mark.parametrize("key", ["routing.router", "cache.model_dir", "ledger.journal_dir", "database"])
def test_nul_bytes_are_refused(key: str) -> None:
    path = "ledger\x00.db"
    raw = {
        "routing.router": {"routing": {"router": path}},
        "cache.model_dir": {"cache": {"model_dir": path}},
        "ledger.journal_dir": {"ledger": {"journal_dir": path}},
        "database": {"database": f"sqlite:///{path}"},
    }[key]
    with pytest.raises(ValueError, match=f"{key}: the path contains a NUL byte"):
        Config.model_validate(raw)


def test_absolute_and_inner_relative_paths_are_accepted(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    config = load(
        tmp_path,
        f"database: sqlite:///{tmp_path}/../{tmp_path.name}/ledger.db\n"
        f"cache: {{model_dir: {models}}}\n"
        "ledger: {journal_dir: state/./journal}\n",
    )
    assert config.cache.model_dir == str(models)
    assert config.ledger.journal_dir == "state/./journal"


@pytest.mark.parametrize(
    "path", ["a/..b/c", "..hidden", "dir/x..y"], ids=["dots-in-a-name", "dotdot-prefix", "infix"]
)
def test_dots_inside_a_name_are_not_a_parent(path: str) -> None:
    assert path_problem(path) is None


def test_missing_files_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cache\.model_dir: no such directory: .*absent"):
        load(tmp_path, f"cache: {{model_dir: {tmp_path / 'absent'}}}")
    with pytest.raises(ConfigError, match=r"routing\.router: no such file: .*absent\.npz"):
        load(tmp_path, f"routing: {{{TIERS}, router: {tmp_path / 'absent.npz'}}}")
    # Routing off (no tiers): the router file is never read, so its absence is no error.
    load(tmp_path, f"routing: {{router: {tmp_path / 'absent.npz'}}}")
