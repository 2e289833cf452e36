"""Privacy: prompt and response text stay out of the ledger unless `privacy.store_prompts: true`, and
secrets (provider keys, the admin key, clients' credentials) never appear in logs, error bodies or
the ledger, failed and malformed requests included.

The response caches store what they must to answer (the request's key or embedding and the answer),
scoped by tenant and expiring: tests/cache/test_keys.py (scope), tests/cache/test_stores.py (scope
and expiry), tests/server/test_semantic_cache.py (`test_scope_comes_before_similarity`,
`test_entries_expire`). They are off unless a feature turns them on, as in every test here.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from uvicorn.logging import AccessFormatter

from faregate.fake_provider import FakeProvider, Scenario
from faregate.logs import REDACTED, SecretRedactor, configure_logging
from tests.fixtures.gateway import RunningGateway
from tests.server._support import SONNET, SONNET_DEPRECATION

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


def ledger_bytes(gw: RunningGateway) -> bytes:
    """Every byte of the SQLite ledger, its write-ahead log included (recent rows live there)."""
    gw.flush()
    path = Path(gw.config.database.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def chat(gw: RunningGateway, text: str, **headers: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{gw.url}{OPENAI_PATH}", json=body, headers=headers, timeout=30)


# --- prompt and response text --------------------------------------------------------------------


def test_prompts_are_not_stored_by_default(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    prompt, answer = f"prompt-{secrets.token_hex(8)}", f"answer-{secrets.token_hex(8)}"
    gw = make_gateway(upstream={"retries": 0})
    fake_provider.push(Scenario(text=answer))
    assert chat(gw, prompt).status_code == 200
    fake_provider.push(Scenario(status=500))
    assert chat(gw, prompt + "-failed").status_code == 500
    (ok, failed) = gw.events()
    assert (ok.prompt_text, ok.response_text, failed.prompt_text) == (None, None, None)
    stored = ledger_bytes(gw)
    assert prompt.encode() not in stored and answer.encode() not in stored


def test_prompts_are_stored_when_asked(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    prompt, answer = f"prompt-{secrets.token_hex(8)}", f"answer-{secrets.token_hex(8)}"
    gw = make_gateway(privacy={"store_prompts": True})
    fake_provider.push(Scenario(text=answer))
    assert chat(gw, prompt).status_code == 200
    (event,) = gw.events()
    assert event.prompt_text is not None and prompt in event.prompt_text
    assert event.response_text == answer
    stored = ledger_bytes(gw)
    assert prompt.encode() in stored and answer.encode() in stored


# --- secrets -------------------------------------------------------------------------------------

PROVIDER_KEY = f"sk-gateway-{secrets.token_hex(12)}"
ADMIN_KEY = f"admin-{secrets.token_hex(12)}"  # no credential shape: only registration catches it
CLIENT_KEY = f"sk-client-{secrets.token_hex(12)}"
ANTHROPIC_CLIENT_KEY = f"sk-ant-client-{secrets.token_hex(12)}"
VIRTUAL_KEY = f"fgk-{secrets.token_hex(6)}-{secrets.token_hex(16)}"
SECRETS = [PROVIDER_KEY, ADMIN_KEY, CLIENT_KEY, ANTHROPIC_CLIENT_KEY, VIRTUAL_KEY]
LOGGERS = ("faregate", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything FareGate's and uvicorn's loggers write at DEBUG, restored afterwards."""
    stream = io.StringIO()
    saved = {name: _state(logging.getLogger(name)) for name in LOGGERS}
    yield stream
    for name, (handlers, level, propagate, filters) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.filters[:] = handlers, filters
        logger.setLevel(level)
        logger.propagate = propagate


def log_into(stream: io.StringIO, level: str, **options: Any) -> None:
    """FareGate's own logging set-up (as `faregate serve` runs it), writing JSON lines to `stream`."""
    configure_logging(level, "json", **options)
    handler = logging.getLogger("faregate").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)  # pytest swaps sys.stderr between phases: bind the handler here


def _state(logger: logging.Logger) -> tuple[list[logging.Handler], int, bool, list[object]]:
    return list(logger.handlers), logger.level, logger.propagate, list(logger.filters)


def test_secrets_never_leak(
    make_gateway: Callable[..., RunningGateway],
    fake_provider: FakeProvider,
    captured_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FG_PRIVACY_PROVIDER_KEY", PROVIDER_KEY)
    monkeypatch.setenv("FG_PRIVACY_ADMIN_KEY", ADMIN_KEY)
    gw = make_gateway(
        providers={
            "openai": {
                "type": "openai",
                "base_url": f"{fake_provider.url}/v1",
                "api_key_env": "FG_PRIVACY_PROVIDER_KEY",
            }
        },
        server={"admin_key_env": "FG_PRIVACY_ADMIN_KEY"},
        upstream={"retries": 0},
    )
    log_into(captured_logs, "debug", config=gw.config)
    capture = logging.StreamHandler(captured_logs)
    for name in ("uvicorn", "uvicorn.access"):  # uvicorn.error propagates to uvicorn
        logging.getLogger(name).addHandler(capture)
    for name in LOGGERS[1:]:
        logging.getLogger(name).setLevel(logging.DEBUG)

    client = {"authorization": f"Bearer {CLIENT_KEY}", "x-faregate-feature": "privacy"}
    replies = [chat(gw, "hello", **client)]
    fake_provider.push(Scenario(status=401), Scenario(status=500))
    replies += [chat(gw, "hello", **client), chat(gw, "hello", **client)]
    replies.append(
        httpx.post(
            f"{gw.url}{OPENAI_PATH}", content=b'{"model": ', headers={**client, "x-api-key": VIRTUAL_KEY}
        )
    )
    replies.append(
        httpx.post(
            f"{gw.url}{ANTHROPIC_PATH}",
            json={"model": SONNET, "max_tokens": 10**12, "messages": [{"role": "user", "content": "x"}]},
            headers={"x-api-key": ANTHROPIC_CLIENT_KEY, "anthropic-version": "2023-06-01"},
        )
    )
    admin = f"{gw.url}/faregate/v1/budgets"
    replies.append(httpx.get(admin, headers={"authorization": f"Bearer {ADMIN_KEY}"}))
    replies.append(httpx.get(admin, headers={"authorization": f"Bearer {CLIENT_KEY}"}))
    replies.append(httpx.get(admin, params={"api_key": CLIENT_KEY, "admin": ADMIN_KEY}))
    assert [r.status_code for r in replies] == [200, 401, 500, 400, 400, 200, 401, 401]
    # The gateway sent its own key upstream, never the client's.
    assert fake_provider.requests[0].headers["authorization"] == f"Bearer {PROVIDER_KEY}"

    # Lines that would carry secrets without the redactor: a debug line with the headers, and an
    # error whose message and traceback quote the keys.
    log = logging.getLogger("faregate.test")
    log.debug("upstream headers %s", {"authorization": f"Bearer {PROVIDER_KEY}", "x-admin": ADMIN_KEY})
    try:
        raise RuntimeError(f"upstream refused {PROVIDER_KEY} for {VIRTUAL_KEY}")
    except RuntimeError:
        log.exception("call failed", extra={"credential": ANTHROPIC_CLIENT_KEY})

    logs = captured_logs.getvalue()
    assert "upstream headers" in logs and "call failed" in logs and "GET /faregate/v1/budgets" in logs
    assert REDACTED in logs
    assert VIRTUAL_KEY[:16] in logs  # the key id stays, to tell keys apart
    bodies = "".join(r.text for r in replies)
    stored = ledger_bytes(gw)
    assert len(gw.events()) == 5
    for secret in SECRETS:
        assert secret not in logs, secret
        assert secret not in bodies, secret
        assert secret.encode() not in stored, secret


def test_the_redactor_handles_credential_shapes() -> None:
    redactor = SecretRedactor([ADMIN_KEY, "short"])
    for line, kept in [
        (f"Authorization: Bearer {CLIENT_KEY}", "Authorization: Bearer "),
        (f"x-api-key: {ANTHROPIC_CLIENT_KEY}", "x-api-key: sk-ant-"),
        (f"{{'api_key': '{ADMIN_KEY}'}}", "'api_key': '"),
        (f"key={VIRTUAL_KEY}", VIRTUAL_KEY[:16]),
        (f"Basic {secrets.token_urlsafe(12)}", "Basic "),
        (f"connect to postgresql://fare:{ADMIN_KEY[6:]}@db/ledger failed", "connect to postgresql://fare:"),
    ]:
        redacted = redactor.redact(line)
        assert redacted.startswith(kept) or kept in redacted, redacted
        assert REDACTED in redacted
        for secret in SECRETS:
            assert secret not in redacted
    assert redactor.redact("short and sk-a") == "short and sk-a"  # too short to be a secret


def test_uvicorn_access_lines_keep_their_format() -> None:
    """uvicorn's access formatter unpacks the record's arguments: they are redacted in place."""
    path = f"/faregate/v1/budgets?api_key={CLIENT_KEY}"
    args = ("127.0.0.1:5000", "GET", path, "1.1", 401)
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None
    )
    SecretRedactor().filter(record)
    line = AccessFormatter(use_colors=False).format(record)
    assert line.endswith('"GET /faregate/v1/budgets?api_key=sk-[redacted] HTTP/1.1" 401'), line


def test_redaction_is_cheap() -> None:
    """A log line costs ~20 µs more (lines are written on errors, off the hot path)."""
    import timeit

    redactor = SecretRedactor([PROVIDER_KEY, ADMIN_KEY])
    record = logging.LogRecord(
        "faregate.x", logging.ERROR, __file__, 1, "upstream failed: %s", ("x" * 200,), None
    )
    per_line = min(timeit.repeat(lambda: redactor.filter(record), number=1000, repeat=3)) / 1000
    assert per_line < 500e-6, per_line  # ~20 µs on the dev machine; generous for shared CI cores


def test_json_lines_stay_json_after_redaction(captured_logs: io.StringIO) -> None:
    log_into(captured_logs, "info", secrets=[ADMIN_KEY])
    logging.getLogger("faregate.test").warning("key %s", ADMIN_KEY, extra={"detail": f"Bearer {ADMIN_KEY}"})
    line = orjson.loads(captured_logs.getvalue().splitlines()[-1])
    assert line["msg"] == f"key {REDACTED}" and line["detail"] == f"Bearer {REDACTED}"
