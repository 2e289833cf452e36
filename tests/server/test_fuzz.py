"""Property-based fuzzing of the whole app in-process: whatever arrives (any JSON, any bytes, any
attribution header), FareGate answers below 500, in the client's own error format, and every
request to a proxy route is one ledger event.

The app runs with its lifespan (Starlette's TestClient) in front of the fake provider; admin
requests come from a loopback client address. Bounded (200 examples a property, no deadline) so
the module runs in well under a minute.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from faregate.call import ATTRIBUTION_DIMENSIONS
from faregate.fake_provider import FakeProvider
from faregate.ledger import open_store
from faregate.server import create_app
from tests.fixtures.gateway import gateway_config


def dump(value: object) -> bytes:
    """JSON text, integers beyond 64 bits included (orjson.dumps refuses them, clients do not)."""
    return json.dumps(value).encode()


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
PROXY = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system"]) | json_values},
        optional={"content": st.text(max_size=40) | json_values, "name": json_values},
    )
    | json_values,
    min_size=0,
    max_size=4,
)
# What an HTTP/1.1 server lets through in a header value: tab, visible ASCII, obs-text.
header_text = st.text(
    alphabet=st.sampled_from(
        "\t" + "".join(map(chr, range(0x20, 0x7F))) + "".join(map(chr, range(0x80, 0x100)))
    ),
    max_size=40,
)
METADATA_KEYS = ["feature", "team", "user_id", "faregate_task", "x"]
# Near-valid bodies: a valid request with one or two fields replaced, so they get past the parser
# and exercise validation and the pipeline behind it (attribution, anatomy, budget, upstream).
text_or_parts = st.text(max_size=40) | st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20) | json_values}), max_size=3
)
replacements = {
    "model": st.sampled_from(["gpt-4o-mini", "claude-sonnet-4-5", "fast", "", "a\r\nb"]) | json_values,
    "messages": st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system"]) | json_values},
            optional={"content": text_or_parts | json_values, "name": json_values},
        )
        | json_values,
        max_size=4,
    )
    | json_values,
    "max_tokens": st.integers(min_value=-5, max_value=2**64) | json_values,
    "max_completion_tokens": st.integers(min_value=-5, max_value=2**64) | json_values,
    "stream": st.booleans() | json_values,
    "temperature": st.floats(min_value=0, max_value=1) | json_values,
    "n": st.integers(min_value=0, max_value=3) | json_values,
    "metadata": st.dictionaries(
        st.sampled_from(["feature", "team", "user_id", "faregate_task", "x"]), json_values
    )
    | json_values,
    "system": text_or_parts | json_values,
    "tools": st.lists(json_values, max_size=2) | json_values,
    "user": st.text(max_size=10) | json_values,
}
valid = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
near_valid = st.lists(st.sampled_from(sorted(replacements)), max_size=2, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({key: replacements[key] for key in keys}).map(
        lambda changed: {**valid, **changed}
    )
)
# Mostly near-valid (listed thrice: one_of picks its branches evenly), some any JSON, some any bytes.
bodies = (
    st.one_of(near_valid, near_valid, near_valid).map(dump) | json_values.map(dump) | st.binary(max_size=200)
)
attribution_headers = st.dictionaries(
    st.sampled_from([f"x-faregate-{d}" for d in ATTRIBUTION_DIMENSIONS]), header_text, max_size=3
)


@dataclass
class Fuzzed:
    client: TestClient
    database: str
    proxy_requests: int = 0
    seen: list[int] = field(default_factory=list)

    def ledger_count(self) -> int:
        gateway = self.client.app.state.gateway  # type: ignore[attr-defined]
        self.client.portal.call(gateway.writer.flush)  # type: ignore[union-attr]
        store = open_store(self.database)
        try:
            return len(store.events())
        finally:
            store.close()


@pytest.fixture(scope="module")
def fuzzed(fake_provider_server: FakeProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    database = f"sqlite:///{tmp_path_factory.mktemp('fuzz')}/ledger.db"
    # A budget, so absurd output limits would reach its pricing if validation let them through.
    budgets = [{"scope": "feature", "name": "unattributed", "limit_usd": "1000"}]
    app = create_app(gateway_config(fake_provider_server.url, database, budgets=budgets))
    with TestClient(app, client=("127.0.0.1", 50000), raise_server_exceptions=False) as client:
        yield Fuzzed(client, database)


def assert_provider_error(protocol: str, body: bytes) -> None:
    """The error envelope the protocol's SDKs parse (FareGate's own or the provider's, passed on)."""
    error = orjson.loads(body)
    if protocol == "openai":
        assert isinstance(error["error"]["message"], str), error
    else:
        assert error["type"] == "error" and isinstance(error["error"]["message"], str), error


@FUZZ
@given(path=st.sampled_from(sorted(PROXY)), body=bodies, headers=attribution_headers)
def test_proxy_routes_never_fail_with_5xx(
    fuzzed: Fuzzed, path: str, body: bytes, headers: dict[str, str]
) -> None:
    before = fuzzed.ledger_count()
    reply = fuzzed.client.post(
        path,
        content=body,
        headers={
            "content-type": "application/json",
            "anthropic-version": "2023-06-01",
            **{name: value.encode("latin-1") for name, value in headers.items()},
        },
    )
    assert reply.status_code < 500, reply.text
    event(f"{path} {reply.status_code}")  # --hypothesis-show-statistics: how deep the bodies got
    assert reply.headers["x-faregate-request-id"]
    if reply.status_code >= 400:
        assert_provider_error(PROXY[path], reply.content)
    assert fuzzed.ledger_count() == before + 1  # refused or not, one event


@FUZZ
@given(headers=attribution_headers)
def test_models_never_fail(fuzzed: Fuzzed, headers: dict[str, str]) -> None:
    reply = fuzzed.client.get("/v1/models", headers={k: v.encode("latin-1") for k, v in headers.items()})
    assert reply.status_code == 200 and isinstance(reply.json()["data"], list)


ADMIN_GETS = [
    "/faregate/v1/budgets",
    "/faregate/v1/cache/stats",
    "/faregate/v1/routing",
    "/faregate/v1/history",
    "/faregate/v1/prompt-cache",
    "/faregate/v1/overview",
    "/faregate/v1/attribution",
    "/faregate/v1/unit-economics",
    "/faregate/v1/templates",
    "/faregate/v1/anatomy",
]
times = st.floats().map(str) | st.integers(min_value=-(2**70), max_value=2**70).map(str) | header_text
queries = st.fixed_dictionaries(
    {},
    optional={
        "since": times,
        "until": times,
        "bucket": st.sampled_from(["hour", "day"]) | header_text,
        "by": st.sampled_from(["feature", "team", "user"]) | header_text,
        **{name: header_text for name in ("feature", "team", "template", "model", "tenant")},
    },
)


@FUZZ
@given(path=st.sampled_from(ADMIN_GETS), query=queries)
def test_admin_reads_never_fail_with_5xx(fuzzed: Fuzzed, path: str, query: dict[str, str]) -> None:
    reply = fuzzed.client.get(path, params=query)
    assert reply.status_code < 500, reply.text
    assert isinstance(reply.json(), dict)


@FUZZ
@given(
    path=st.sampled_from(["/faregate/v1/feedback", "/faregate/v1/events"]),
    body=json_values.map(dump) | st.binary(max_size=100),
)
def test_admin_writes_never_fail_with_5xx(fuzzed: Fuzzed, path: str, body: bytes) -> None:
    reply = fuzzed.client.post(path, content=body)
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        assert isinstance(reply.json()["error"]["message"], str)


def test_cache_invalidation_with_any_filter(fuzzed: Fuzzed) -> None:
    reply = fuzzed.client.delete("/faregate/v1/cache", params={"feature": "'; DROP TABLE x; --"})
    assert reply.status_code == 200 and reply.json() == {"deleted": 0}
