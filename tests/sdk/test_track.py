"""`faregate.track()` and `faregate.log_cost_event()`: the real `openai` and `anthropic` SDKs against the
fake provider, recorded in a real SQLite ledger, priced and dissected as the gateway would."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pydantic
import pytest

import faregate
from faregate import sdk
from faregate.anatomy import COMPONENTS
from faregate.call import Attribution, Usage
from faregate.fake_provider import FakeProvider, Scenario
from faregate.ledger import CostEvent, open_store
from faregate.ledger.writer import read_fallback
from faregate.pricing import PriceBook
from faregate.sdk.events import Observed
from faregate.sdk.recorder import Recorder
from faregate.sdk.settings import Settings
from tests.fixtures.gateway import RunningGateway, gateway_config

SONNET = "claude-sonnet-4-6"
SYSTEM = "You are a support agent for an online shop. Answer briefly and politely."
OPENAI_MESSAGES: list[Any] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Where is my order 1234? It was due yesterday."},
]
ANTHROPIC_MESSAGES: list[Any] = [{"role": "user", "content": "Where is my order 1234? It was due yesterday."}]
ATTRIBUTION = {"feature": "support", "team": "cx", "template": "v2", "cohort": "beta", "user": "u-42"}


def per_mtok(*parts: tuple[int, str]) -> Decimal:
    return sum((tokens * Decimal(price) for tokens, price in parts), Decimal(0)) / 1_000_000


# gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per million tokens
GPT_COST = per_mtok((400, "0.15"), (600, "0.075"), (50, "0.60"))
# claude-sonnet-4-6: $3 input, $0.30 cache read, $6 1-hour cache write, $15 output per million tokens
SONNET_COST = per_mtok((300, "3"), (600, "0.30"), (100, "6"), (50, "15"))


def cached_scenario(**kwargs: Any) -> Scenario:
    return Scenario(prompt_tokens=1000, cached_tokens=600, completion_tokens=50, **kwargs)


def anthropic_scenario() -> Scenario:
    return cached_scenario(cache_write_1h_tokens=100)


@dataclass
class Ledger:
    database: str

    def events(self) -> list[CostEvent]:
        assert sdk.flush(10)
        store = open_store(self.database)
        try:
            return sorted(store.events(), key=lambda e: e.ts)
        finally:
            store.close()

    def only(self) -> CostEvent:
        events = self.events()
        assert len(events) == 1, events
        return events[0]


@pytest.fixture
def ledger(tmp_path: Path, fake_provider: FakeProvider) -> Iterator[Ledger]:
    """The SDK configured as a gateway in front of the fake would be (its providers name the fake)."""
    database = f"sqlite:///{tmp_path}/sdk-ledger.db"
    faregate.configure(config=gateway_config(fake_provider.url, database))
    yield Ledger(database)
    sdk.shutdown()


@pytest.fixture
def oai(fake_provider: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{fake_provider.url}/v1", api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(fake_provider: FakeProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake_provider.url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


def async_oai(fake: FakeProvider) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="sk-test", max_retries=0)


def async_claude(fake: FakeProvider) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0)


def assert_priced(event: CostEvent, *, cost: Decimal, provider: str, protocol: str, model: str) -> None:
    assert (event.protocol, event.provider, event.model_requested, event.model_used) == (
        protocol,
        provider,
        model,
        model,
    )
    assert (event.status, event.error_kind) == (200, None)
    assert (event.price_known, event.usage_estimated) == (True, False)
    assert event.cost_usd == cost
    assert event.baseline_cost_nusd == event.cost_nusd
    assert (event.input_tokens, event.cached_tokens, event.output_tokens) == (1000, 600, 50)
    assert event.latency_ms > 0
    assert_anatomy(event)


def assert_anatomy(event: CostEvent) -> None:
    parts = {name: getattr(event, f"{name}_tokens") for name in COMPONENTS}
    assert sum(parts.values()) == event.input_tokens, parts
    assert parts["query"] > 0 and parts["overhead"] > 0, parts


def assert_attributed(event: CostEvent) -> None:
    assert {k: getattr(event, k) for k in ATTRIBUTION} == ATTRIBUTION
    assert (event.conversation, event.task) == ("unattributed", "unattributed")


def upstream_bodies(fake: FakeProvider, path: str) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.path == path and r.body is not None]


# --- OpenAI ----------------------------------------------------------------------------------------


def test_openai_call_is_recorded_priced_and_dissected(
    ledger: Ledger, oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    fake_provider.push(cached_scenario())
    tracked = faregate.track(oai, **ATTRIBUTION)

    reply = tracked.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_MESSAGES)

    assert reply.choices[0].message.content == "Hello from the fake provider."
    event = ledger.only()
    assert_priced(event, cost=GPT_COST, provider="openai", protocol="openai", model="gpt-4o-mini")
    assert_attributed(event)
    assert event.stream is False
    assert event.system_tokens > 0
    # the saving provider caching made: 600 cached tokens at $0.15 - $0.075
    assert event.prompt_cache_saving_nusd == 600 * 75


def test_openai_stream_asks_for_usage_and_hides_the_usage_chunk(
    ledger: Ledger, oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    fake_provider.push(cached_scenario())
    tracked = faregate.track(oai, **ATTRIBUTION)

    chunks = list(tracked.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_MESSAGES, stream=True))

    assert all(chunk.choices and chunk.usage is None for chunk in chunks)  # as without FareGate
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello from the fake provider."
    (sent,) = upstream_bodies(fake_provider, "/v1/chat/completions")
    assert sent["stream_options"] == {"include_usage": True}
    event = ledger.only()
    assert_priced(event, cost=GPT_COST, provider="openai", protocol="openai", model="gpt-4o-mini")
    assert event.stream is True


def test_openai_stream_keeps_the_usage_chunk_the_caller_asked_for(
    ledger: Ledger, oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    fake_provider.push(cached_scenario())
    with faregate.track(oai).chat.completions.create(
        model="gpt-4o-mini", messages=OPENAI_MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)

    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 1000
    assert ledger.only().cost_usd == GPT_COST


async def test_async_openai_call_and_stream(ledger: Ledger, fake_provider: FakeProvider) -> None:
    fake_provider.push(cached_scenario(), cached_scenario())
    async with faregate.track(async_oai(fake_provider), **ATTRIBUTION) as tracked:
        reply = await tracked.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_MESSAGES)
        stream = await tracked.chat.completions.create(
            model="gpt-4o-mini", messages=OPENAI_MESSAGES, stream=True
        )
        chunks = [chunk async for chunk in stream]

    assert reply.usage is not None and reply.usage.prompt_tokens == 1000
    assert all(chunk.choices for chunk in chunks)
    first, second = ledger.events()
    for event, streamed in ((first, False), (second, True)):
        assert_priced(event, cost=GPT_COST, provider="openai", protocol="openai", model="gpt-4o-mini")
        assert_attributed(event)
        assert event.stream is streamed


def test_stream_stopped_early_is_recorded_as_client_disconnected(
    ledger: Ledger, oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    fake_provider.push(cached_scenario(chunks=5))
    stream = faregate.track(oai).chat.completions.create(
        model="gpt-4o-mini", messages=OPENAI_MESSAGES, stream=True
    )
    next(stream)
    stream.close()

    event = ledger.only()
    assert (event.status, event.error_kind, event.stream) == (200, "client_disconnected", True)
    assert event.usage_estimated and event.input_tokens > 0  # no usage arrived: counted locally
    assert_anatomy(event)


class Answer(pydantic.BaseModel):
    answer: str


def test_openai_parse_is_recorded_even_when_the_sdk_refuses_the_answer(
    ledger: Ledger, oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    fake_provider.push(cached_scenario(text='{"answer": "tomorrow"}'), cached_scenario())
    tracked = faregate.track(oai, feature="extract")

    parsed = tracked.chat.completions.parse(
        model="gpt-4o-mini", messages=OPENAI_MESSAGES, response_format=Answer
    )
    with pytest.raises(openai.LengthFinishReasonError):  # billed, then refused by the SDK
        tracked.chat.completions.parse(
            model="gpt-4o-mini", messages=OPENAI_MESSAGES, response_format=Answer, max_tokens=5
        )

    assert parsed.choices[0].message.parsed == Answer(answer="tomorrow")
    ok, cut = ledger.events()
    assert_priced(ok, cost=GPT_COST, provider="openai", protocol="openai", model="gpt-4o-mini")
    assert (cut.status, cut.error_kind, cut.output_tokens, cut.input_tokens) == (200, "sdk_error", 5, 1000)
    assert cut.cost_usd == per_mtok((400, "0.15"), (600, "0.075"), (5, "0.60"))


# --- Anthropic -------------------------------------------------------------------------------------


def anthropic_request() -> dict[str, Any]:
    return {"model": SONNET, "max_tokens": 256, "system": SYSTEM, "messages": ANTHROPIC_MESSAGES}


def assert_anthropic(event: CostEvent, *, stream: bool) -> None:
    assert_priced(event, cost=SONNET_COST, provider="anthropic", protocol="anthropic", model=SONNET)
    assert (event.cache_write_tokens, event.cache_write_1h_tokens) == (100, 100)
    assert event.stream is stream
    assert event.system_tokens > 0


def test_anthropic_create_and_raw_stream(
    ledger: Ledger, claude: anthropic.Anthropic, fake_provider: FakeProvider
) -> None:
    fake_provider.push(anthropic_scenario(), anthropic_scenario())
    tracked = faregate.track(claude, **ATTRIBUTION)

    message = tracked.messages.create(**anthropic_request())
    events = list(tracked.messages.create(**anthropic_request(), stream=True))

    assert message.content[0].type == "text"
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    first, second = ledger.events()
    assert_anthropic(first, stream=False)
    assert_anthropic(second, stream=True)
    assert_attributed(second)


def test_anthropic_stream_helper(
    ledger: Ledger, claude: anthropic.Anthropic, fake_provider: FakeProvider
) -> None:
    fake_provider.push(anthropic_scenario())
    with faregate.track(claude, **ATTRIBUTION).messages.stream(**anthropic_request()) as stream:
        assert "".join(stream.text_stream) == "Hello from the fake provider."

    event = ledger.only()
    assert_anthropic(event, stream=True)
    assert_attributed(event)


async def test_async_anthropic_create_stream_and_stream_helper(
    ledger: Ledger, fake_provider: FakeProvider
) -> None:
    fake_provider.push(anthropic_scenario(), anthropic_scenario(), anthropic_scenario())
    async with faregate.track(async_claude(fake_provider), **ATTRIBUTION) as tracked:
        message = await tracked.messages.create(**anthropic_request())
        raw = await tracked.messages.create(**anthropic_request(), stream=True)
        kinds = [event.type async for event in raw]
        async with tracked.messages.stream(**anthropic_request()) as stream:
            final = await stream.get_final_message()

    assert message.usage.cache_read_input_tokens == 600
    assert kinds[-1] == "message_stop"
    assert final.stop_reason == "end_turn"
    events = ledger.events()
    assert [e.stream for e in events] == [False, True, True]
    for event in events:
        assert_anthropic(event, stream=event.stream)
        assert_attributed(event)


# --- failures --------------------------------------------------------------------------------------


def test_upstream_error_is_recorded_and_reraised_unchanged(
    ledger: Ledger, oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    fake_provider.push(Scenario(status=500))
    tracked = faregate.track(oai, feature="support")

    with pytest.raises(openai.InternalServerError) as raised:
        tracked.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_MESSAGES)

    assert raised.value.status_code == 500
    event = ledger.only()
    assert (event.status, event.error_kind, event.feature) == (500, "upstream_error", "support")
    assert (event.cost_nusd, event.input_tokens, event.price_known) == (0, 0, True)


async def test_async_anthropic_error_is_recorded_and_reraised(
    ledger: Ledger, fake_provider: FakeProvider
) -> None:
    fake_provider.push(Scenario(status=529), Scenario(status=500))
    async with faregate.track(async_claude(fake_provider)) as tracked:
        with pytest.raises(anthropic.APIStatusError) as raised:
            await tracked.messages.create(**anthropic_request())
        with pytest.raises(anthropic.InternalServerError):
            async with tracked.messages.stream(**anthropic_request()) as stream:
                await stream.get_final_message()

    assert raised.value.status_code == 529
    assert [(e.status, e.error_kind, e.stream) for e in ledger.events()] == [
        (529, "upstream_error", False),
        (500, "upstream_error", True),
    ]


def test_unreachable_provider_is_recorded_as_unavailable(ledger: Ledger) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
    with client, pytest.raises(openai.APIConnectionError):
        faregate.track(client).chat.completions.create(model="gpt-4o-mini", messages=OPENAI_MESSAGES)

    event = ledger.only()
    assert (event.status, event.error_kind, event.provider) == (502, "upstream_unavailable", "127.0.0.1")


def test_a_bug_in_recording_never_reaches_the_application(
    ledger: Ledger, oai: openai.OpenAI, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("recording bug")

    monkeypatch.setattr("faregate.sdk.calls.request_body", broken)
    monkeypatch.setattr("faregate.sdk.calls.read_response", broken)
    fake_provider.push(cached_scenario())

    reply = faregate.track(oai).chat.completions.create(model="gpt-4o-mini", messages=OPENAI_MESSAGES)

    assert reply.choices[0].message.content
    event = ledger.only()  # still recorded, with what could be read
    assert (event.status, event.model_requested, event.system_tokens) == (200, "gpt-4o-mini", 0)


# --- the same event as the gateway -----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_event_matches_the_gateways_for_the_same_call(
    protocol: str, ledger: Ledger, gateway: RunningGateway, fake_provider: FakeProvider
) -> None:
    scenario = cached_scenario() if protocol == "openai" else anthropic_scenario()
    fake_provider.push(scenario, scenario)

    def call(client: Any) -> None:
        if protocol == "openai":
            client.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_MESSAGES)
        else:
            client.messages.create(**anthropic_request())

    if protocol == "openai":
        direct: Any = openai.OpenAI(base_url=f"{fake_provider.url}/v1", api_key="k", max_retries=0)
        proxied: Any = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0)
    else:
        direct = anthropic.Anthropic(base_url=fake_provider.url, api_key="k", max_retries=0)
        proxied = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0)
    with direct, proxied:
        call(faregate.track(direct, feature="support"))
        call(proxied.with_options(default_headers={"X-FareGate-Feature": "support"}))

    (ours,) = ledger.events()
    (theirs,) = gateway.events()
    fields = [
        "feature",
        "protocol",
        "provider",
        "model_requested",
        "model_used",
        "status",
        "input_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "price_known",
        "cost_nusd",
        "prompt_cache_saving_nusd",
        *(f"{name}_tokens" for name in COMPONENTS),
    ]
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(theirs, f) for f in fields}
    assert ours.cost_nusd > 0


# --- the wrapper -----------------------------------------------------------------------------------


def test_the_original_client_is_unchanged(
    ledger: Ledger, oai: openai.OpenAI, fake_provider: FakeProvider
) -> None:
    create = oai.chat.completions.create
    tracked = faregate.track(oai, feature="support")

    assert oai.chat.completions.create == create
    oai.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_MESSAGES)
    assert ledger.events() == []  # only the tracked client records
    # everything else is the client's own
    assert tracked.api_key == "sk-test" and tracked.max_retries == 0
    assert [m.id for m in tracked.models.list()][:1] == ["gpt-4o"]
    assert isinstance(tracked, openai.OpenAI)
    assert faregate.track(tracked, user="u-1") is not tracked


def test_per_call_and_retracked_attribution(ledger: Ledger, oai: openai.OpenAI) -> None:
    tracked = faregate.track(oai, feature="support", team="cx")
    per_user = faregate.track(tracked, user="u-7")
    per_user.chat.completions.create(model="gpt-4o-mini", messages=OPENAI_MESSAGES)
    tracked.chat.completions.create(
        model="gpt-4o-mini", messages=OPENAI_MESSAGES, extra_headers={"X-FareGate-Feature": "search"}
    )
    tracked.with_options(timeout=5).chat.completions.create(
        model="gpt-4o-mini", messages=OPENAI_MESSAGES, user="native-user"
    )

    assert [(e.feature, e.team, e.user) for e in ledger.events()] == [
        ("support", "cx", "u-7"),
        ("search", "cx", "unattributed"),
        ("support", "cx", "native-user"),
    ]


def test_provider_is_named_from_the_base_url_or_by_hand(fake_provider: FakeProvider, tmp_path: Path) -> None:
    database = str(tmp_path / "plain.db")  # no config naming the fake: the host names it
    faregate.configure(database=database)
    try:
        fake_provider.push(cached_scenario(), cached_scenario())
        with openai.OpenAI(base_url=f"{fake_provider.url}/v1", api_key="k", max_retries=0) as client:
            faregate.track(client).chat.completions.create(model="gpt-4o-mini", messages=OPENAI_MESSAGES)
            faregate.track(client, provider="vllm").chat.completions.create(
                model="gpt-4o-mini", messages=OPENAI_MESSAGES
            )
        events = Ledger(database).events()
    finally:
        sdk.shutdown()
    assert [e.provider for e in events] == ["127.0.0.1", "vllm"]
    assert all(e.cost_usd == GPT_COST for e in events)  # priced by model name alone, as the gateway would


def test_track_refuses_what_is_not_an_sdk_client() -> None:
    with pytest.raises(TypeError, match="openai or anthropic"):
        faregate.track(object())


# --- log_cost_event --------------------------------------------------------------------------------


def test_log_cost_event_prices_by_hand(ledger: Ledger) -> None:
    request_id = faregate.log_cost_event(
        model="gpt-4o-mini",
        input_tokens=1000,
        cached_tokens=600,
        output_tokens=50,
        feature="batch",
        team="data",
        provider="openai",
        body={"model": "gpt-4o-mini", "messages": OPENAI_MESSAGES},
    )
    faregate.log_cost_event(
        model="my-fine-tune", input_tokens=10, output_tokens=5, cost_usd="0.0042", feature="batch"
    )
    faregate.log_cost_event(model="my-fine-tune", input_tokens=10, output_tokens=5)

    priced, given, unknown = ledger.events()
    assert priced.request_id == request_id
    assert (priced.feature, priced.team, priced.provider) == ("batch", "data", "openai")
    assert priced.model_used == "gpt-4o-mini"
    assert priced.cost_usd == GPT_COST and priced.price_known
    assert_anatomy(priced)
    assert (given.cost_usd, given.price_known, given.system_tokens) == (Decimal("0.0042"), True, 0)
    assert (unknown.cost_nusd, unknown.price_known, unknown.feature) == (0, False, "unattributed")


def test_log_cost_event_never_raises_on_bad_values(ledger: Ledger) -> None:
    faregate.log_cost_event(model="gpt-4o-mini", input_tokens=-5, output_tokens=10, cost_usd="lots")

    event = ledger.only()
    assert (event.input_tokens, event.output_tokens) == (0, 10)
    assert event.cost_usd == per_mtok((10, "0.60"))


# --- the recorder ----------------------------------------------------------------------------------


class FailingStore:
    def __init__(self, fallback: Path) -> None:
        self.fallback_path = fallback
        self.attempts = 0

    def write_batch(self, events: Any) -> None:
        self.attempts += 1
        raise ConnectionError("database is down")

    def close(self) -> None:
        pass


def test_events_the_store_refuses_go_to_the_fallback_file(tmp_path: Path) -> None:
    store = FailingStore(tmp_path / "fallback.jsonl")
    settings = Settings(store=store, prices=PriceBook(), patterns={}, by_url={}, pricing={})
    recorder = Recorder(lambda: settings, retry_delays=(0.01,))
    recorder.submit(
        Observed(
            protocol="openai",
            attribution=Attribution(feature="f"),
            model_requested="gpt-4o-mini",
            usage=Usage(input_tokens=10, output_tokens=5),
        )
    )
    assert recorder.flush(10)
    recorder.close()

    (event,) = read_fallback(store.fallback_path)
    assert (event.feature, event.input_tokens, store.attempts) == ("f", 10, 2)


def test_events_are_stored_at_interpreter_exit_without_flush(
    fake_provider: FakeProvider, tmp_path: Path
) -> None:
    """A script that never flushes: the exit hook stores its call, and a stream it left open (dropped
    only when the interpreter tears down, after the hook) is recorded on the spot, without a hang."""
    database = tmp_path / "exit.db"
    script = textwrap.dedent(
        f"""
        import faregate, openai
        faregate.configure(database={str(database)!r})
        client = openai.OpenAI(base_url={fake_provider.url + "/v1"!r}, api_key="k")
        client = faregate.track(client, feature="cron")
        messages = [{{"role": "user", "content": "hi"}}]
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        left_open = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
        next(left_open)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=tmp_path)

    store = open_store(str(database))
    try:
        events = sorted(store.events(), key=lambda e: e.ts)
    finally:
        store.close()
    assert [(e.feature, e.stream, e.error_kind) for e in events] == [
        ("cron", False, None),
        ("cron", True, "client_disconnected"),
    ]
