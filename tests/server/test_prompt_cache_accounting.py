"""Prompt-cache accounting, replayed from recorded provider payloads (tests/fixtures/payloads/).

Each recording goes through a real gateway, sent by the official SDK (streaming when it is SSE), and
the ledger event is checked against a hand computation from these prices (USD per million tokens,
checked once against genai-prices):

    claude-sonnet-4-5   input 3     cache read 0.30   5-min write 3.75   1-h write 6   output 15
    gpt-4o              input 2.50  cached     1.25                                    output 10

FareGate's conventions under test: `input_tokens` is the whole prompt (Anthropic reports cache reads
and writes *beside* its `input_tokens`; OpenAI counts cached tokens *inside* `prompt_tokens`), and
`prompt_cache_saving_nusd` is the cost with every input token at the plain input price minus the
actual cost: negative when a write cost more than it saved, zero with no cache tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from faregate.fake_provider import FakeProvider, Scenario
from faregate.ledger import CostEvent
from tests.fixtures.gateway import RunningGateway
from tests.server._support import SONNET, SONNET_DEPRECATION, anthropic_client, only_event, openai_client

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)

PAYLOADS = Path(__file__).parent.parent / "fixtures" / "payloads"
NANOS_PER_MTOK_USD = Decimal(1000)  # $1 per million tokens = 1 micro-dollar = 1,000 nano-dollars a token
MESSAGES: list[Any] = [{"role": "user", "content": "What does the document say?"}]

SONNET_PRICES = {"input": Decimal("3"), "read": Decimal("0.30"), "write_5m": Decimal("3.75")}
SONNET_PRICES |= {"write_1h": Decimal("6"), "output": Decimal("15")}
GPT4O_PRICES = {"input": Decimal("2.50"), "read": Decimal("1.25"), "output": Decimal("10")}


@dataclass(frozen=True)
class Recorded:
    """What a recording reports, restated by hand (the test does not read it from the file)."""

    name: str
    fresh: int  # billed at the plain input price
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0
    output: int = 0

    @property
    def protocol(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def prompt(self) -> int:
        return self.fresh + self.read + self.write_5m + self.write_1h

    def cost_nusd(self) -> Decimal:
        if self.protocol == "anthropic":
            p = SONNET_PRICES
            micro = (
                self.fresh * p["input"]
                + self.read * p["read"]
                + self.write_5m * p["write_5m"]
                + self.write_1h * p["write_1h"]
                + self.output * p["output"]
            )
        else:
            p = GPT4O_PRICES
            micro = self.fresh * p["input"] + self.read * p["read"] + self.output * p["output"]
        return micro * NANOS_PER_MTOK_USD

    def baseline_nusd(self) -> Decimal:
        p = SONNET_PRICES if self.protocol == "anthropic" else GPT4O_PRICES
        return (self.prompt * p["input"] + self.output * p["output"]) * NANOS_PER_MTOK_USD


ANTHROPIC_5M = Recorded("anthropic_5m_write", fresh=21, write_5m=188_086, output=393)
ANTHROPIC_1H = Recorded("anthropic_1h_write", fresh=14, write_5m=2_304, write_1h=4_096, output=512)
ANTHROPIC_READ = Recorded("anthropic_read", fresh=21, read=188_086, output=393)
ANTHROPIC_MISS = Recorded("anthropic_miss", fresh=1_450, output=87)
OPENAI_CACHED = Recorded("openai_cached", fresh=2_006 - 1_920, read=1_920, output=300)
OPENAI_MISS = Recorded("openai_miss", fresh=1_117, output=64)

# The same sums written out, in micro-dollars, so a slip in the helper above cannot hide:
#   5m write: 21 x 3 + 188,086 x 3.75 + 393 x 15         = 63 + 705,322.5 + 5,895     = 711,280.5
#             baseline 188,107 x 3 + 5,895 = 570,216      saving 570,216 - 711,280.5 = -141,064.5
#   1h write: 14 x 3 + 2,304 x 3.75 + 4,096 x 6 + 512 x 15 = 42 + 8,640 + 24,576 + 7,680 = 40,938
#             baseline 6,414 x 3 + 7,680 = 26,922         saving 26,922 - 40,938        = -14,016
#   read:     21 x 3 + 188,086 x 0.30 + 393 x 15         = 63 + 56,425.8 + 5,895      = 62,383.8
#             saving 570,216 - 62,383.8 = 507,832.2
#   miss:     1,450 x 3 + 87 x 15 = 4,350 + 1,305 = 5,655                                 saving 0
#   gpt-4o cached: 86 x 2.50 + 1,920 x 1.25 + 300 x 10 = 215 + 2,400 + 3,000 = 5,615
#             baseline 2,006 x 2.50 + 3,000 = 8,015       saving 2,400
#   gpt-4o miss: 1,117 x 2.50 + 64 x 10 = 2,792.5 + 640 = 3,432.5                        saving 0
HAND: dict[str, tuple[str, str]] = {  # name -> (cost, saving) in micro-dollars
    "anthropic_5m_write": ("711280.5", "-141064.5"),
    "anthropic_1h_write": ("40938", "-14016"),
    "anthropic_read": ("62383.8", "507832.2"),
    "anthropic_miss": ("5655", "0"),
    "openai_cached": ("5615", "2400"),
    "openai_miss": ("3432.5", "0"),
}
CASES = [ANTHROPIC_5M, ANTHROPIC_1H, ANTHROPIC_READ, ANTHROPIC_MISS, OPENAI_CACHED, OPENAI_MISS]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hand_sums_agree(case: Recorded) -> None:
    cost, saving = (Decimal(v) * 1000 for v in HAND[case.name])
    assert case.cost_nusd() == cost
    assert case.baseline_nusd() - case.cost_nusd() == saving


def _send(gw: RunningGateway, case: Recorded, stream: bool) -> str | None:
    """One request through the gateway with the official SDK; the cost header when not streaming."""
    if case.protocol == "anthropic":
        with anthropic_client(gw) as claude:
            if stream:
                with claude.messages.stream(model=SONNET, max_tokens=1024, messages=MESSAGES) as events:
                    usage = events.get_final_message().usage
                header = None
            else:
                raw = claude.messages.with_raw_response.create(
                    model=SONNET, max_tokens=1024, messages=MESSAGES
                )
                usage, header = raw.parse().usage, raw.headers.get("x-faregate-cost-usd")
        # the client sees the provider's own numbers, untouched
        assert (usage.input_tokens, usage.cache_read_input_tokens) == (case.fresh, case.read)
        assert usage.cache_creation_input_tokens == case.write_5m + case.write_1h
        assert usage.output_tokens == case.output
        return header
    with openai_client(gw) as oai:
        if stream:
            chunks = list(
                oai.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                )
            )
            reported, header = chunks[-1].usage, None
        else:
            response = oai.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
            reported, header = response.parse().usage, response.headers.get("x-faregate-cost-usd")
    assert reported is not None and reported.prompt_tokens_details is not None
    assert (reported.prompt_tokens, reported.prompt_tokens_details.cached_tokens) == (case.prompt, case.read)
    return header


def _check(event: CostEvent, case: Recorded, stream: bool) -> None:
    assert event.stream is stream and event.status == 200
    assert event.price_known and not event.usage_estimated
    assert (
        event.input_tokens,
        event.cached_tokens,
        event.cache_write_tokens,
        event.cache_write_1h_tokens,
        event.output_tokens,
    ) == (case.prompt, case.read, case.write_5m + case.write_1h, case.write_1h, case.output)
    cost, saving = (Decimal(v) * 1000 for v in HAND[case.name])
    assert event.cost_nusd == cost
    assert event.prompt_cache_saving_nusd == saving


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_recorded_payload_is_priced_exactly(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, case: Recorded, stream: bool
) -> None:
    recording = (PAYLOADS / f"{case.name}.{'sse' if stream else 'json'}").read_bytes()
    fake_provider.push(Scenario(replay_stream=recording) if stream else Scenario(replay_body=recording))
    gw = make_gateway()

    header = _send(gw, case, stream)

    event = only_event(gw)
    _check(event, case, stream)
    dated = "claude-sonnet-4-5-20250929" if case.protocol == "anthropic" else "gpt-4o-2024-08-06"
    assert event.model_used == dated  # priced as the snapshot the provider says answered
    if not stream:
        assert header is not None and Decimal(header) == event.cost_usd


def test_openai_stream_priced_when_the_client_did_not_ask_for_usage(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    """FareGate asks upstream for the usage chunk itself; a client that did not ask must not see it."""
    fake_provider.push(Scenario(replay_stream=(PAYLOADS / "openai_cached.sse").read_bytes()))
    gw = make_gateway()
    with openai_client(gw) as oai:
        chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    _check(only_event(gw), OPENAI_CACHED, stream=True)


def test_simulated_write_then_read_through_the_gateway(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    """Not a recording: the fake's prompt-cache simulation, so the second call reads what the first wrote."""
    fake_provider.prompt_cache = True
    fake_provider.scenario = Scenario(completion_tokens=50)
    document = "".join(
        f"Section {n}: deliveries are due within {n % 9 + 1} days of order. " for n in range(120)
    )
    system: Any = [{"type": "text", "text": document, "cache_control": {"type": "ephemeral"}}]
    gw = make_gateway()
    with anthropic_client(gw) as claude:
        for question in ("When is section 7 due?", "And section 8?"):
            claude.messages.create(
                model=SONNET, max_tokens=256, system=system, messages=[{"role": "user", "content": question}]
            )

    write, read = sorted(gw.events(), key=lambda e: e.cached_tokens)
    assert write.cache_write_tokens > 1024 and write.cached_tokens == 0 and write.cache_write_1h_tokens == 0
    assert (read.cached_tokens, read.cache_write_tokens) == (write.cache_write_tokens, 0)
    for event in (write, read):
        fresh = event.input_tokens - event.cached_tokens - event.cache_write_tokens
        case = Recorded("anthropic", fresh, event.cached_tokens, event.cache_write_tokens, output=50)
        assert event.cost_nusd == case.cost_nusd()
        assert event.prompt_cache_saving_nusd == case.baseline_nusd() - case.cost_nusd()
    assert write.prompt_cache_saving_nusd < 0 < read.prompt_cache_saving_nusd
