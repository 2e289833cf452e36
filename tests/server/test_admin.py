"""The admin API's guard: a bearer key when configured, else this machine only."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from starlette.requests import Request

from faregate.server.admin import _refuse
from tests.fixtures.gateway import RunningGateway


def test_with_an_admin_key_configured_the_key_is_required(
    make_gateway: Callable[..., RunningGateway], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAREGATE_TEST_ADMIN_KEY", "s3cret-admin")
    gw = make_gateway(server={"admin_key_env": "FAREGATE_TEST_ADMIN_KEY"})
    url = f"{gw.url}/faregate/v1/cache/stats"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    allowed = httpx.get(url, headers={"Authorization": "Bearer s3cret-admin"})
    assert allowed.status_code == 200 and allowed.json() == {"features": []}
    assert httpx.delete(f"{gw.url}/faregate/v1/cache").status_code == 401


def test_without_a_key_only_loopback_clients_are_served() -> None:
    def request(host: str, authorization: str | None = None) -> Request:
        headers = [(b"authorization", authorization.encode())] if authorization else []
        return Request(
            {"type": "http", "method": "GET", "path": "/", "headers": headers, "client": (host, 5000)}
        )

    assert _refuse(request("127.0.0.1"), None) is None
    assert _refuse(request("::1"), None) is None
    refused = _refuse(request("10.1.2.3"), None)
    assert refused is not None and refused.status_code == 403
    assert _refuse(request("10.1.2.3", "Bearer k"), "k") is None  # with a key, any host that has it
