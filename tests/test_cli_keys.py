"""`faregate keys create|list|revoke` and `faregate serve`'s refusal to listen unprotected off loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from typer.testing import CliRunner

from faregate.cli import app
from faregate.keys import open_key_store

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "faregate.yaml"
    path.write_text(f"database: sqlite:///{tmp_path}/ledger.db\n")
    return path


def create(config: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["keys", "create", "--config", str(config), "--format", "json", *args])
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = orjson.loads(result.stdout)
    return payload


def test_create_prints_the_key_once_and_it_verifies(config: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["keys", "create", "--team", "search", "--name", "prod", "--config", str(config)]
    )

    assert result.exit_code == 0, result.output
    key = next(line for line in result.stdout.splitlines() if line.startswith("fgk-"))
    assert "cannot show this key again" in result.output
    store = open_key_store(f"sqlite:///{tmp_path}/ledger.db")
    try:
        record = store.verify(key)
    finally:
        store.close()
    assert record is not None and (record.team, record.name) == ("search", "prod")


def test_create_json_carries_budget_and_models(config: Path) -> None:
    payload = create(
        config, "--team", "ads", "--budget", "25", "--budget-period", "day", "--models", "fast,auto"
    )

    assert payload["key"].startswith(f"fgk-{payload['id']}-")
    assert (payload["team"], payload["budget_usd"], payload["budget_period"]) == ("ads", "25", "day")
    assert payload["models"] == ["fast", "auto"]


def test_list_never_shows_secrets_or_hashes(config: Path, tmp_path: Path) -> None:
    first = create(config, "--team", "search", "--budget", "10")
    second = create(config, "--team", "ads", "--models", "fast")

    table = runner.invoke(app, ["keys", "list", "--config", str(config)])
    as_json = runner.invoke(app, ["keys", "list", "--config", str(config), "--format", "json"])

    assert table.exit_code == 0 and as_json.exit_code == 0
    assert first["id"] in table.stdout and "search" in table.stdout and "$10 / month" in table.stdout
    listed = orjson.loads(as_json.stdout)["keys"]
    assert [k["id"] for k in listed] == [first["id"], second["id"]]
    assert set(listed[0]) == {
        "id", "team", "name", "budget_usd", "budget_period", "models", "created_at", "revoked_at"
    }  # fmt: skip
    store = open_key_store(f"sqlite:///{tmp_path}/ledger.db")
    try:
        hashes = [r.hash for r in store.list()]
    finally:
        store.close()
    for created in (first, second):
        secret = created["key"].split("-", 2)[2]
        for output in (table.stdout, as_json.stdout):
            assert secret not in output
    for output in (table.stdout, as_json.stdout):
        assert not any(h in output for h in hashes)


def test_revoke_marks_the_key_and_unknown_ids_fail_with_exit_2(config: Path) -> None:
    created = create(config, "--team", "search")

    revoked = runner.invoke(app, ["keys", "revoke", created["id"], "--config", str(config)])
    unknown = runner.invoke(app, ["keys", "revoke", "0123456789ab", "--config", str(config)])
    listed = runner.invoke(app, ["keys", "list", "--config", str(config), "--format", "json"])

    assert revoked.exit_code == 0, revoked.output
    assert orjson.loads(listed.stdout)["keys"][0]["revoked_at"] is not None
    assert unknown.exit_code == 2
    assert "no key with id '0123456789ab'" in unknown.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "-5"], "positive"),
        (["--budget", "lots"], "US dollars"),
        (["--models", ","], "at least one model"),
    ],
)
def test_bad_input_is_refused_with_exit_2(config: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["keys", "create", "--team", "search", "--config", str(config), *args])
    assert result.exit_code == 2
    assert message in result.output


# --- serve off loopback ----------------------------------------------------------------------------


@pytest.fixture
def no_listening(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace uvicorn.run: a refusal must come before anything binds a socket."""
    calls: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    return calls


def serve_config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(f"database: sqlite:///{tmp_path}/serve.db\nserver:\n  host: 0.0.0.0\n{extra}")
    return path


def test_serve_refuses_a_public_bind_without_authentication(tmp_path: Path, no_listening: list[Any]) -> None:
    result = runner.invoke(app, ["serve", "--config", str(serve_config(tmp_path, ""))])

    assert result.exit_code == 2
    assert "auth.virtual_keys: true" in result.output
    assert "server.admin_key_env: FAREGATE_ADMIN_KEY" in result.output
    assert "faregate keys create --team" in result.output
    assert no_listening == []
    assert not (tmp_path / "serve.db").exists()  # refused before any store opened


def test_serve_names_the_missing_admin_key_variable(
    tmp_path: Path, no_listening: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FG_TEST_ADMIN", raising=False)
    config = serve_config(tmp_path, "  admin_key_env: FG_TEST_ADMIN\nauth:\n  virtual_keys: true\n")

    result = runner.invoke(app, ["serve", "--config", str(config)])

    assert result.exit_code == 2
    assert "FG_TEST_ADMIN" in result.output and "auth.virtual_keys" not in result.output
    assert no_listening == []


def test_serve_refuses_a_public_host_given_on_the_command_line(config: Path, no_listening: list[Any]) -> None:
    result = runner.invoke(app, ["serve", "--config", str(config), "--host", "10.0.0.5"])
    assert result.exit_code == 2 and no_listening == []


def test_serve_listens_off_loopback_once_authentication_is_configured(
    tmp_path: Path, no_listening: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FG_TEST_ADMIN", "admin-secret")
    config = serve_config(tmp_path, "  admin_key_env: FG_TEST_ADMIN\nauth:\n  virtual_keys: true\n")

    result = runner.invoke(app, ["serve", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert len(no_listening) == 1 and no_listening[0][1]["host"] == "0.0.0.0"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_needs_no_authentication(config: Path, no_listening: list[Any], host: str) -> None:
    result = runner.invoke(app, ["serve", "--config", str(config), "--host", host])
    assert result.exit_code == 0, result.output
    assert len(no_listening) == 1


def test_virtual_keys_refuse_to_start_when_a_provider_has_no_key(
    tmp_path: Path, no_listening: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FG_TEST_OPENAI", raising=False)
    path = tmp_path / "nokey.yaml"
    path.write_text(
        f"database: sqlite:///{tmp_path}/ledger.db\nauth: {{virtual_keys: true}}\n"
        "providers:\n  openai: {type: openai, api_key_env: FG_TEST_OPENAI}\n"
    )

    result = runner.invoke(app, ["serve", "--config", str(path)])

    assert result.exit_code == 2
    assert "providers.openai" in result.output and "FG_TEST_OPENAI" in result.output
    assert no_listening == []
