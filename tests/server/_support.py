"""Helpers shared by the end-to-end server tests: SDK clients pointed at a running gateway."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import anthropic
import openai

from faregate.config import Config
from faregate.ledger import CostEvent
from tests.fixtures.gateway import RunningGateway

# A model genai-prices knows, with 5-minute and 1-hour cache-write prices; the anthropic SDK warns
# that it is deprecated, which is irrelevant here (warnings are errors in this suite).
SONNET = "claude-sonnet-4-5"
SONNET_DEPRECATION = "ignore:The model 'claude-sonnet-4-5' is deprecated:DeprecationWarning"

OPENAI_KEY = "sk-client-openai"
ANTHROPIC_KEY = "sk-ant-client"


class Gateway(Protocol):
    """What a test needs of a running gateway: its URL and its ledger events."""

    @property
    def url(self) -> str: ...

    def events(self) -> list[CostEvent]: ...


class GatewayView:
    """One test's view of a gateway shared by many: the same URL, but only this test's events.

    Starting and stopping a uvicorn server costs ~0.2 s (its shutdown sleeps 0.1 s twice), which
    across a hundred tests is most of the run; the gateway holds no state between requests other
    than the ledger, so tests on the default config share one and each sees only its own events.
    """

    def __init__(self, running: RunningGateway) -> None:
        self.running = running
        self.url = running.url
        self._earlier = {event.request_id for event in running.events()}

    def events(self) -> list[CostEvent]:
        return [e for e in self.running.events() if e.request_id not in self._earlier]


def openai_client(gw: Gateway, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=OPENAI_KEY, max_retries=0, **kwargs)


def async_openai_client(gw: Gateway, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=OPENAI_KEY, max_retries=0, **kwargs)


def anthropic_client(gw: Gateway, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=ANTHROPIC_KEY, max_retries=0, **kwargs)


def async_anthropic_client(gw: Gateway, **kwargs: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gw.url, api_key=ANTHROPIC_KEY, max_retries=0, **kwargs)


def only_event(gw: Gateway, timeout: float = 5.0) -> CostEvent:
    """The single ledger event a test expects (fails loudly when there are none or several).

    A stream is settled when its generator finishes, which can be a moment after the client read
    the last byte: wait for the event rather than race it.
    """
    deadline = time.monotonic() + timeout
    while not (events := gw.events()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(events) == 1, events
    return events[0]


def wait_for_events(gw: Gateway, count: int, timeout: float = 5.0) -> list[CostEvent]:
    """Events settled off the response path (a stream the client abandoned) land a moment later."""
    deadline = time.monotonic() + timeout
    while len(events := gw.events()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(events) == count, events
    return events


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released, so connecting is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def custom_gateway(tmp_path: Path, raw: dict[str, Any]) -> Iterator[RunningGateway]:
    """A gateway on a config built from scratch (the fixture's overrides can only add providers)."""
    config = Config.model_validate({"database": f"sqlite:///{tmp_path}/custom-ledger.db", **raw})
    running = RunningGateway(config)
    try:
        yield running
    finally:
        running.stop()
