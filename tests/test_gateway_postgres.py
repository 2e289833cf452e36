"""`database: postgresql://...` and nothing else changes: the same traffic, the same ledger rows."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from decimal import Decimal

import openai

from faregate.fake_provider import FakeProvider, Scenario
from tests.fixtures.gateway import RunningGateway


def test_gateway_writes_its_ledger_to_postgres(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, postgres_db_url: str
) -> None:
    gateway = make_gateway(database=postgres_db_url)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="test", max_retries=0)
    fake_provider.push(Scenario(prompt_tokens=1000, cached_tokens=400, completion_tokens=50))
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-FareGate-Feature": "pg-feature", "X-FareGate-Team": "data"},
    )
    stream = client.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    with contextlib.suppress(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[])

    events = gateway.events()
    assert [(e.feature, e.team, e.status, e.stream) for e in events] == [
        ("pg-feature", "data", 200, False),
        ("unattributed", "unattributed", 200, True),
        ("unattributed", "unattributed", 400, False),
    ]
    # 600 uncached x $0.15 + 400 cached x $0.075 + 50 output x $0.60, per million tokens
    expected = (600 * Decimal("0.15") + 400 * Decimal("0.075") + 50 * Decimal("0.60")) / 1_000_000
    assert events[0].cost_usd == expected
    assert events[0].cached_tokens == 400
    assert events[1].input_tokens == 1200 and events[1].output_tokens == 20
