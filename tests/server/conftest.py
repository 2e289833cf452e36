"""A gateway shared by the tests on the default config, and SDK clients bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anthropic
import openai
import pytest

from faregate.fake_provider import FakeProvider
from tests.fixtures.gateway import RunningGateway, gateway_config
from tests.server._support import (
    GatewayView,
    anthropic_client,
    async_anthropic_client,
    async_openai_client,
    openai_client,
)


@pytest.fixture(scope="session")
def _shared_running_gateway(
    fake_provider_server: FakeProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    database = f"sqlite:///{tmp_path_factory.mktemp('shared-gateway')}/ledger.db"
    running = RunningGateway(gateway_config(fake_provider_server.url, database))
    yield running
    running.stop()


@pytest.fixture
def shared_gateway(_shared_running_gateway: RunningGateway, fake_provider: FakeProvider) -> GatewayView:
    """The default-config gateway (same config as the `gateway` fixture), seeing only this test's
    ledger events; the fake upstream is reset for each test. Use `make_gateway` for any other config
    or for a test that leaves requests in flight (timeouts). Its circuit breakers start closed: a
    test that makes the upstream fail on purpose must not turn the next test's requests into 503s."""
    _shared_running_gateway.gateway.upstream.breakers.reset()
    return GatewayView(_shared_running_gateway)


@pytest.fixture
def oai(shared_gateway: GatewayView) -> Iterator[openai.OpenAI]:
    with openai_client(shared_gateway) as client:
        yield client


@pytest.fixture
async def aoai(shared_gateway: GatewayView) -> AsyncIterator[openai.AsyncOpenAI]:
    async with async_openai_client(shared_gateway) as client:
        yield client


@pytest.fixture
def claude(shared_gateway: GatewayView) -> Iterator[anthropic.Anthropic]:
    with anthropic_client(shared_gateway) as client:
        yield client


@pytest.fixture
async def aclaude(shared_gateway: GatewayView) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with async_anthropic_client(shared_gateway) as client:
        yield client
