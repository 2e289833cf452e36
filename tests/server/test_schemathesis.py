"""An OpenAPI-driven fuzz run: schemathesis generates requests from FareGate's own description
(`GET /openapi.json`, built by faregate.server.openapi) for every operation, valid and invalid ones,
and checks that none gets a 5xx and that answers match the documented schemas.

The gateway is a real server on loopback (the admin API is open to loopback clients) in front of the
fake provider. The run is bounded (25 examples an operation) to stay well under a minute.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from faregate.server.openapi import build_openapi
from tests.fixtures.gateway import RunningGateway

schema = schemathesis.openapi.from_dict(build_openapi())


@pytest.fixture
def fuzzed_gateway(_shared_running_gateway: RunningGateway) -> RunningGateway:
    """The session's default-config gateway (tests/server/conftest.py), its circuits closed."""
    _shared_running_gateway.gateway.upstream.breakers.reset()
    return _shared_running_gateway


def test_the_document_is_served(fuzzed_gateway: RunningGateway) -> None:
    reply = httpx.get(f"{fuzzed_gateway.url}/openapi.json")
    assert reply.status_code == 200
    assert reply.json() == build_openapi()
    assert reply.json()["openapi"].startswith("3.1")


EXAMPLES = int(os.environ.get("FAREGATE_FUZZ_EXAMPLES", "25"))


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_server_errors(case: schemathesis.Case, fuzzed_gateway: RunningGateway) -> None:
    case.call_and_validate(
        base_url=fuzzed_gateway.url, checks=[not_a_server_error, response_schema_conformance]
    )
