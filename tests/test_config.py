from pathlib import Path

import pytest

from faregate.config import load_config
from faregate.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "faregate.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "faregate.yaml"
    path.write_text(text)
    return path


def test_example_config_is_valid() -> None:
    config = load_config(EXAMPLE, environ={})
    assert config.server.port == 4000
    assert config.models["fast"].provider == "openai"
    assert config.providers["anthropic"].url == "https://api.anthropic.com"


def test_defaults_without_a_file() -> None:
    config = load_config(None, environ={})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 4000)
    assert config.database == "sqlite:///.faregate/ledger.db"
    assert config.server.max_body_bytes == 20 * 1024 * 1024


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("server: {prot: 1}", "server.prot: unknown key"),
        ("server: {port: 99999}", "server.port"),
        ("providers: {openai: {type: opnai}}", "providers.openai.type"),
        ("providers: {local: {type: openai-compatible}}", "base_url is required"),
        ("providers: {openai: {type: openai, base_url: ftp://x}}", "providers.openai.base_url"),
        (
            "providers: {openai: {type: openai}}\nmodels: {fast: {provider: nope, model: m}}",
            "models.fast.provider",
        ),
        ("database: mysql://x", "database"),
        ("prices: {m: {input_mtok: -1, output_mtok: 1}}", "prices.m.input_mtok"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert key in str(info.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml", environ={})
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "server: [unclosed"), environ={})
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: 4000}\nproviders: {openai: {type: openai}}\n")
    config = load_config(
        path,
        environ={
            "FAREGATE_SERVER__PORT": "4100",
            "FAREGATE_DATABASE": "postgresql://u@h/db",
            "FAREGATE_PROVIDERS__OPENAI__BASE_URL": "http://127.0.0.1:9/v1",
            "UNRELATED": "1",
        },
    )
    assert config.server.port == 4100
    assert config.database == "postgresql://u@h/db"
    assert config.providers["openai"].url == "http://127.0.0.1:9/v1"


def test_api_key_is_read_from_the_named_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MY_KEY", "sk-secret")
    config = load_config(
        write(tmp_path, "providers: {openai: {type: openai, api_key_env: MY_KEY}}"), environ={}
    )
    assert config.providers["openai"].api_key() == "sk-secret"
