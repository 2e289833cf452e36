"""The fake provider's random fault injection (load tests) and its `down` switch."""

from __future__ import annotations

import random
import time
from collections import Counter

import httpx
import pytest

from faregate.fake_provider import FakeProvider, Faults, Scenario
from faregate.fake_provider.__main__ import main

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def outcome(fake: FakeProvider, client: httpx.Client, body: dict[str, object] = BODY) -> str:
    try:
        reply = client.post(f"{fake.url}/v1/chat/completions", json=body)
    except httpx.TimeoutException:  # a TransportError too: first
        return "hung"
    except httpx.TransportError:
        return "dropped"
    return str(reply.status_code)


def test_faults_draw_each_kind_at_its_rate() -> None:
    faults = Faults(error_rate=0.1, rate_limit_rate=0.05, timeout_rate=0.02, disconnect_rate=0.03, seed=1)
    rng = random.Random(faults.seed)
    counts = Counter(faults.draw(rng) for _ in range(20_000))
    for kind, rate in [("error", 0.1), ("rate_limit", 0.05), ("timeout", 0.02), ("disconnect", 0.03)]:
        assert counts[kind] / 20_000 == pytest.approx(rate, abs=0.01)
    assert counts[None] / 20_000 == pytest.approx(0.8, abs=0.015)


def test_rates_are_validated() -> None:
    with pytest.raises(ValueError, match="add up"):
        Faults(error_rate=0.7, timeout_rate=0.4)
    with pytest.raises(ValueError):
        Faults(error_rate=-0.1)


def test_same_seed_same_faults() -> None:
    def run() -> list[str]:
        with (
            FakeProvider(faults=Faults(error_rate=0.3, rate_limit_rate=0.2, seed=42)) as fake,
            httpx.Client() as c,
        ):
            return [outcome(fake, c) for _ in range(30)]

    first = run()
    assert first == run()
    assert {"200", "429"} <= set(first) and set(first) & {"500", "503"}


def test_error_and_rate_limit_bodies_are_the_providers() -> None:
    with FakeProvider() as fake, httpx.Client() as client:
        fake.faults = Faults(rate_limit_rate=1.0, retry_after_s=2.5)
        reply = client.post(f"{fake.url}/v1/chat/completions", json=BODY)
        assert (reply.status_code, reply.headers["retry-after"]) == (429, "2.5")
        assert reply.json()["error"]["code"] == "rate_limit_exceeded"
        fake.faults = Faults(error_rate=1.0)
        body = {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": BODY["messages"]}
        reply = client.post(f"{fake.url}/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"})
        assert reply.status_code in (500, 529)
        assert reply.json()["type"] == "error"


def test_queued_scenarios_come_first() -> None:
    with FakeProvider(faults=Faults(error_rate=1.0)) as fake, httpx.Client() as client:
        fake.push(Scenario())
        assert outcome(fake, client) == "200"
        assert outcome(fake, client) in ("500", "503")


def test_timeout_fault_hangs() -> None:
    with FakeProvider(faults=Faults(timeout_rate=1.0, hang_s=5)) as fake, httpx.Client(timeout=0.3) as client:
        started = time.monotonic()
        assert outcome(fake, client) == "hung"
        assert time.monotonic() - started < 2


def test_disconnect_mid_stream_sends_part_of_the_stream() -> None:
    with FakeProvider(faults=Faults(disconnect_rate=1.0)) as fake, httpx.Client() as client:
        assert outcome(fake, client) == "dropped"  # a full response: nothing at all
        received = b""
        url = f"{fake.url}/v1/chat/completions"
        with (
            pytest.raises(httpx.TransportError),
            client.stream("POST", url, json={**BODY, "stream": True}) as r,
        ):
            assert r.status_code == 200
            for chunk in r.iter_raw():
                received += chunk
        assert b"chat.completion.chunk" in received and b"[DONE]" not in received


def test_down_drops_every_connection_and_comes_back() -> None:
    with FakeProvider() as fake, httpx.Client() as client:
        fake.push(Scenario(text="after"))
        fake.down = True
        assert [outcome(fake, client) for _ in range(3)] == ["dropped"] * 3
        assert len(fake.requests) == 3  # still logged: a test can count what reached it
        fake.down = False
        reply = client.post(f"{fake.url}/v1/chat/completions", json=BODY)
        assert reply.json()["choices"][0]["message"]["content"] == "after"
        fake.reset()
        assert fake.faults == Faults()


def test_cli_rejects_impossible_rates(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--error-rate", "0.8", "--timeout-rate", "0.5"])
    assert "add up" in capsys.readouterr().err
