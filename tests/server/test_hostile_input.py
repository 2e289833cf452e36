"""Hostile and malformed requests: each gets a clear 4xx in the client's error format, or is stored as
inert text, and every one of them still reaches the ledger.

HTML and script in attribution values are stored verbatim and shown as text by the dashboard: that is
checked in a real browser by tests/dashboard/test_dashboard_browser.py
(`test_html_in_feature_names_is_text`); here only the JSON the dashboard reads is checked.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from faregate.errors import InvalidRequest
from faregate.fake_provider import FakeProvider
from faregate.ledger import CostEvent
from faregate.pipeline.identify import attribution_from_headers
from faregate.protocols.base import MAX_DEPTH, MAX_OUTPUT_TOKENS, parse_json_object
from tests.fixtures.gateway import RunningGateway
from tests.server._support import SONNET, GatewayView, only_event

OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]
OPENAI_BODY: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES}
ANTHROPIC_BODY: dict[str, Any] = {"model": SONNET, "max_tokens": 16, "messages": MESSAGES}
PROTOCOLS = [(OPENAI_PATH, OPENAI_BODY), (ANTHROPIC_PATH, ANTHROPIC_BODY)]


def post(gw: GatewayView | RunningGateway, path: str, raw: bytes, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.url}{path}", content=raw, headers={**HEADERS, **headers}, timeout=30)


def error_message(path: str, reply: httpx.Response) -> str:
    """The message of the provider-style error body (and a check that the body has that style)."""
    body = reply.json()
    if path == OPENAI_PATH:
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "invalid_request"
        return str(body["error"]["message"])
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    return str(body["error"]["message"])


def assert_refused(
    gw: GatewayView, fake: FakeProvider, path: str, raw: bytes, says: str, **headers: str
) -> CostEvent:
    """A 400 in the protocol's format naming the problem; nothing sent upstream; one ledger event."""
    reply = post(gw, path, raw, **headers)
    assert reply.status_code == 400, reply.text
    assert says in error_message(path, reply)
    assert fake.requests == []
    event = only_event(gw)
    assert (event.status, event.error_kind) == (400, "invalid_request")
    assert event.request_id == reply.headers["x-faregate-request-id"]
    return event


def nested(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


# --- deep and huge JSON --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["content", "metadata", "tools"])
@pytest.mark.parametrize("depth", [100_000, MAX_DEPTH + 10])
def test_deep_nesting_is_refused(
    shared_gateway: GatewayView, fake_provider: FakeProvider, where: str, depth: int
) -> None:
    """100k levels (orjson's own limit is 1024) and just past FareGate's (orjson would parse it, and
    the stages that walk a body recurse): a 400, never a RecursionError or a crash."""
    deep = "[" * depth + "]" * depth if where == "content" else nested(depth)
    raw = {
        "content": f'{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":{deep}}}]}}',
        "metadata": '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],'
        f'"metadata":{deep}}}',
        "tools": '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],'
        f'"tools":[{{"type":"function","function":{{"name":"f","parameters":{deep}}}}}]}}',
    }[where]
    assert_refused(shared_gateway, fake_provider, OPENAI_PATH, raw.encode(), f"deeper than {MAX_DEPTH}")


def test_nesting_within_the_limit_is_served(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    """A deep-but-allowed tool schema goes through every stage (token counting walks it) to upstream."""
    schema = nested(MAX_DEPTH - 8)
    raw = (
        '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],'
        f'"tools":[{{"type":"function","function":{{"name":"f","parameters":{schema}}}}}]}}'
    )
    reply = post(shared_gateway, OPENAI_PATH, raw.encode())
    assert reply.status_code == 200, reply.text
    assert len(fake_provider.requests) == 1
    assert only_event(shared_gateway).status == 200


@pytest.mark.parametrize(("path", "body"), PROTOCOLS)
def test_many_messages_are_served(
    shared_gateway: GatewayView, fake_provider: FakeProvider, path: str, body: dict[str, Any]
) -> None:
    """Huge but allowed (under server.max_body_bytes; the 413 above it is in test_errors.py)."""
    turns = [{"role": r, "content": f"turn {i}"} for i in range(2_500) for r in ("user", "assistant")]
    reply = post(shared_gateway, path, orjson.dumps({**body, "messages": [*turns, MESSAGES[0]]}))
    assert reply.status_code == 200, reply.text[:300]
    assert only_event(shared_gateway).status == 200
    assert len(orjson.loads(fake_provider.requests[0].raw)["messages"]) == 5_001


# --- encodings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body"), PROTOCOLS)
@pytest.mark.parametrize(
    "raw",
    [b'{"model":"m","messages":[{"role":"user","content":"\xff\xfe"}]}', b"\xc3\x28", b'"\xed\xa0\x80"'],
    ids=["bad-byte-in-string", "bad-sequence", "encoded-surrogate"],
)
def test_invalid_utf8_is_refused(
    shared_gateway: GatewayView, fake_provider: FakeProvider, path: str, body: Any, raw: bytes
) -> None:
    assert_refused(shared_gateway, fake_provider, path, raw, "not valid UTF-8")


@pytest.mark.parametrize(("path", "body"), PROTOCOLS)
def test_lone_surrogate_escape_is_refused(
    shared_gateway: GatewayView, fake_provider: FakeProvider, path: str, body: dict[str, Any]
) -> None:
    """`"\\ud800"` is valid JSON text but no valid string: no database could store it as text."""
    raw = orjson.dumps(body).replace(b'"hello"', b'"a\\ud800b"')
    event = assert_refused(shared_gateway, fake_provider, path, raw, "UTF-8")
    assert event.model_requested is None  # the body was refused whole


# --- wrong types ---------------------------------------------------------------------------------

OPENAI_WRONG: list[tuple[dict[str, Any], str]] = [
    ({"messages": "hello"}, "'messages' must be a non-empty array"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [1, 2]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": 7, "content": "x"}]}, "messages[0]"),
    ({"model": {"name": "gpt-4o"}}, "'model' must be a non-empty string"),
    ({"model": "gpt-4o\r\nX-Injected: 1"}, "no control characters"),
    ({"model": "m" * 300}, "at most 256"),
    ({"stream": "yes"}, "'stream' must be a boolean"),
    ({"stream_options": "usage"}, "'stream_options' must be an object"),
    ({"temperature": "hot"}, "'temperature' must be a number"),
    ({"temperature": 7}, "'temperature' must be between 0 and 2"),
    ({"top_p": [1]}, "'top_p' must be a number"),
    ({"n": 0}, "'n' must be an integer"),
    ({"n": 10_000}, "'n' must be an integer"),
    ({"tools": {"type": "function"}}, "'tools' must be an array"),
    ({"tools": ["f"]}, "tools[0] must be an object"),
    ({"functions": 3}, "'functions' must be an array"),
]
ANTHROPIC_WRONG: list[tuple[dict[str, Any], str]] = [
    ({"messages": {"role": "user"}}, "'messages' must be a non-empty array"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"system": 5}, "'system' must be a string"),
    ({"system": ["be nice"]}, "system[0] must be an object"),
    ({"stream": 1}, "'stream' must be a boolean"),
    ({"temperature": "0.5"}, "'temperature' must be a number"),
    ({"temperature": 1.5}, "between 0 and 1"),
    ({"top_k": -1}, "'top_k' must be an integer"),
    ({"tools": "search"}, "'tools' must be an array"),
    ({"stop_sequences": "END"}, "'stop_sequences' must be an array"),
]


@pytest.mark.parametrize(("change", "says"), OPENAI_WRONG)
def test_wrong_types_openai(
    shared_gateway: GatewayView, fake_provider: FakeProvider, change: dict[str, Any], says: str
) -> None:
    raw = orjson.dumps({**OPENAI_BODY, **change})
    assert_refused(shared_gateway, fake_provider, OPENAI_PATH, raw, says)


@pytest.mark.parametrize(("change", "says"), ANTHROPIC_WRONG)
def test_wrong_types_anthropic(
    shared_gateway: GatewayView, fake_provider: FakeProvider, change: dict[str, Any], says: str
) -> None:
    raw = orjson.dumps({**ANTHROPIC_BODY, **change})
    assert_refused(shared_gateway, fake_provider, ANTHROPIC_PATH, raw, says)


# --- output limits -------------------------------------------------------------------------------

ABSURD_LIMITS = [-1, 0, 1.5, True, "100", MAX_OUTPUT_TOKENS + 1, 10**18, 1e30, [10]]
LIMIT_CASES = [
    (path, body, field, limit)
    for path, body, fields in (
        (OPENAI_PATH, OPENAI_BODY, ("max_tokens", "max_completion_tokens")),
        (ANTHROPIC_PATH, ANTHROPIC_BODY, ("max_tokens",)),
    )
    for field in fields
    for limit in ABSURD_LIMITS
]


@pytest.mark.parametrize(("path", "body", "field", "limit"), LIMIT_CASES)
def test_absurd_output_limits_are_refused(
    shared_gateway: GatewayView, fake_provider: FakeProvider, path: str, body: Any, field: str, limit: Any
) -> None:
    raw = orjson.dumps({**body, field: limit})
    assert_refused(shared_gateway, fake_provider, path, raw, f"'{field}' must be an integer from 1 to")


def test_integer_beyond_64_bits_is_refused(shared_gateway: GatewayView, fake_provider: FakeProvider) -> None:
    """2**64 parses as a float (orjson): refused like any non-integer, never priced."""
    raw = orjson.dumps(OPENAI_BODY)[:-1] + b',"max_tokens":18446744073709551616}'
    assert_refused(shared_gateway, fake_provider, OPENAI_PATH, raw, "'max_tokens' must be an integer")


def test_absurd_limit_never_reaches_the_budget(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    """The budget stage prices max_tokens: with a budget set, an absurd limit is a 400 from
    validation, not a 429 from a reservation of billions of dollars (or an overflow)."""
    gw = make_gateway(budgets=[{"scope": "feature", "name": "unattributed", "limit_usd": "5"}])
    reply = post(gw, OPENAI_PATH, orjson.dumps({**OPENAI_BODY, "max_tokens": 2**62}))
    assert reply.status_code == 400, reply.text
    ok = post(gw, OPENAI_PATH, orjson.dumps({**OPENAI_BODY, "max_tokens": 100}))
    assert ok.status_code == 200, ok.text
    assert [e.status for e in gw.events()] == [400, 200]


# --- attribution values --------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body"), PROTOCOLS)
def test_header_injection_in_metadata_is_stored_inert(
    shared_gateway: GatewayView, path: str, body: dict[str, Any]
) -> None:
    metadata = {"feature": "a\r\nSet-Cookie: x=1", "team": "t\x00e\x1bam\u2028", "template": "\r\n"}
    reply = post(shared_gateway, path, orjson.dumps({**body, "metadata": metadata}))
    assert reply.status_code == 200, reply.text
    assert "set-cookie" not in reply.headers
    assert all("\r" not in v and "\n" not in v for v in reply.headers.values())
    event = only_event(shared_gateway)
    assert (event.feature, event.team) == ("aSet-Cookie: x=1", "team")
    assert event.template == "unattributed"  # nothing left after cleaning


def test_control_characters_in_attribution_headers_are_removed() -> None:
    """CR, LF and NUL cannot cross HTTP/1.1, and uvicorn (httptools) refuses other control
    characters in headers before FareGate sees the request; an ASGI server that lets them through
    still gets them removed."""
    headers = {
        "X-FareGate-Feature": "se\x01arch\x7f",
        "x-faregate-team": "\tcore\x1f\x85",
        "x-faregate-user": "\x0b",
    }
    attribution = attribution_from_headers(headers)
    assert (attribution.feature, attribution.team, attribution.user) == ("search", "core", "unattributed")


def test_uvicorn_refuses_control_characters_in_headers(shared_gateway: GatewayView) -> None:
    body = orjson.dumps(OPENAI_BODY)
    host, port = shared_gateway.url.removeprefix("http://").split(":")
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-FareGate-Feature: se\x01arch\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    # httpx (h11) refuses to send such a header; a raw socket is what a hostile client uses.
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_control_characters_are_refused_on_a_refused_request_too(
    shared_gateway: GatewayView, fake_provider: FakeProvider
) -> None:
    raw = orjson.dumps({"model": 5, "messages": MESSAGES, "metadata": {"feature": "x\r\ny"}})
    event = assert_refused(shared_gateway, fake_provider, OPENAI_PATH, raw, "'model'")
    assert event.feature == "xy"


SQL = "'; DROP TABLE events; --"


def test_sql_looking_values_are_stored_verbatim(shared_gateway: GatewayView, tmp_path: Path) -> None:
    reply = post(
        shared_gateway,
        OPENAI_PATH,
        orjson.dumps({**OPENAI_BODY, "metadata": {"team": SQL, "user": 'x" OR "1"="1'}}),
        **{"x-faregate-feature": "f' OR 1=1 --"},
    )
    assert reply.status_code == 200
    event = only_event(shared_gateway)
    assert (event.feature, event.team, event.user) == ("f' OR 1=1 --", SQL, 'x" OR "1"="1')
    database = shared_gateway.running.config.database.removeprefix("sqlite:///")
    with sqlite3.connect(database) as conn:
        (count,) = conn.execute("SELECT count(*) FROM events WHERE team = ?", (SQL,)).fetchone()
    assert count == 1  # the table is still there, the value is data
    # and as an admin filter it is a value too (loopback client: the admin API is open)
    found = httpx.get(f"{shared_gateway.url}/faregate/v1/attribution", params={"by": "team", "team": SQL})
    assert found.status_code == 200


def test_html_in_attribution_is_json_text(shared_gateway: GatewayView) -> None:
    """Stored verbatim; the dashboard API returns it JSON-escaped (rendered as text in the browser:
    tests/dashboard/test_dashboard_browser.py::test_html_in_feature_names_is_text)."""
    script = "<script>window.__pwned=1</script>"
    post(shared_gateway, OPENAI_PATH, orjson.dumps(OPENAI_BODY), **{"x-faregate-feature": script})
    assert only_event(shared_gateway).feature == script
    reply = httpx.get(f"{shared_gateway.url}/faregate/v1/attribution", params={"by": "feature"})
    assert reply.headers["content-type"].startswith("application/json")
    assert script in [row["key"] for row in reply.json()["rows"]]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/faregate/v1/overview", {"since": "1", "until": "1e300"}),
        ("/faregate/v1/routing", {"since": "1e300"}),
        ("/faregate/v1/history", {"since": "-5"}),
    ],
)
def test_admin_time_out_of_range(shared_gateway: GatewayView, path: str, query: dict[str, str]) -> None:
    """A time SQLite cannot bind (beyond year 9999, before 1970) is a 400, not an OverflowError 500."""
    reply = httpx.get(f"{shared_gateway.url}{path}", params=query)
    assert reply.status_code == 400
    assert "unix timestamp" in reply.json()["error"]["message"]


def test_depth_limit_is_exact() -> None:
    """The top-level object is level 1: MAX_DEPTH levels parse, one more is refused."""

    def body(levels: int) -> bytes:
        inside = levels - 1
        return ('{"a":' + "[" * inside + "]" * inside + "}").encode()

    assert parse_json_object(body(MAX_DEPTH)) == orjson.loads(body(MAX_DEPTH))
    with pytest.raises(InvalidRequest, match=f"deeper than {MAX_DEPTH}"):
        parse_json_object(body(MAX_DEPTH + 1))
