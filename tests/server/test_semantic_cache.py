"""The response caches end to end: official SDKs → the gateway → the fake provider.

What the issue asks of the two tiers, checked through the real server: exact and semantic hits with
the provider not called, scope before similarity (tenant, system prompt, model, preceding turns),
the guards, the client's cache directives, streaming replays, TTL, invalidation through the admin
API, verification sampling, and the ledger's record of each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from faregate.cache.precision import MIN_SAMPLES
from faregate.fake_provider import FakeProvider, Scenario
from faregate.pipeline.cache import HEADER
from tests.fixtures.gateway import RunningGateway
from tests.server._support import SONNET, SONNET_DEPRECATION, anthropic_client, openai_client

pytestmark = pytest.mark.filterwarnings(SONNET_DEPRECATION)

FAQ = {"faq": {"semantic_cache": True}}
SYSTEM = {"role": "system", "content": "You answer questions about Northwind Bank accounts."}


def ask(gw: RunningGateway, question: str, *, team: str = "support", **kwargs: Any) -> tuple[str, str]:
    """(answer text, X-FareGate-Cache) for one OpenAI request of the `faq` feature."""
    client = openai_client(gw, default_headers={"X-FareGate-Feature": "faq", "X-FareGate-Team": team})
    messages = kwargs.pop("messages", [SYSTEM, {"role": "user", "content": question}])
    raw = client.chat.completions.with_raw_response.create(
        model=kwargs.pop("model", "gpt-4o-mini"), messages=messages, **kwargs
    )
    return raw.parse().choices[0].message.content or "", raw.headers[HEADER]


def upstream_calls(fake: FakeProvider) -> int:
    return sum(1 for r in fake.requests if r.path.endswith(("/chat/completions", "/messages")))


@pytest.fixture
def gw(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return make_gateway(features=FAQ)


def settle(gw: RunningGateway) -> None:
    """Stores happen off the response path: wait for them before the next request."""
    asyncio.run_coroutine_threadsafe(gw.gateway.cache_drain(), gw.loop).result(timeout=30)


def test_an_identical_request_is_an_exact_hit_recorded_at_zero_cost(
    gw: RunningGateway, fake_provider: FakeProvider
) -> None:
    fake_provider.scenario = Scenario(text="You can reset it in the app under Settings.")
    first, status = ask(gw, "How do I reset my PIN?")
    assert status == "miss"
    settle(gw)
    second, status = ask(gw, "How do I reset my PIN?")
    assert (second, status) == (first, "hit")
    assert upstream_calls(fake_provider) == 1
    miss, hit = gw.events()
    assert (miss.cache_status, hit.cache_status) == ("miss", "hit")
    assert hit.cost_nusd == 0 and hit.provider == "openai"
    assert hit.baseline_cost_nusd == miss.cost_nusd > 0  # the saving: what the answer cost to make


def test_a_paraphrase_is_a_semantic_hit_and_a_different_number_is_not(
    gw: RunningGateway, fake_provider: FakeProvider
) -> None:
    ask(gw, "How can I reset the PIN of my card?")
    settle(gw)
    _, status = ask(gw, "how do i reset my card's PIN?")
    assert status == "semantic-hit"
    ask(gw, "Can I transfer 50 dollars to my savings account?")
    settle(gw)
    _, status = ask(gw, "Can I transfer 70 dollars to my savings account?")
    assert status == "miss"  # the guard: numbers differ
    events = gw.events()
    assert events[1].cache_similarity is not None and events[1].cache_similarity > 0.85


def test_scope_comes_before_similarity(gw: RunningGateway, fake_provider: FakeProvider) -> None:
    ask(gw, "How do I reset my PIN?")
    settle(gw)
    assert ask(gw, "How do I reset my PIN?", team="other-team")[1] == "miss"  # another tenant
    assert ask(gw, "How do I reset my PIN?", model="gpt-4o")[1] == "miss"  # another model
    other_system = [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "How do I reset my PIN?"},
    ]
    assert ask(gw, "", messages=other_system)[1] == "miss"
    assert ask(gw, "How do I reset my PIN?", temperature=1.5)[1] == "miss"  # sampling changes the answer


def test_a_follow_up_is_never_answered_from_another_conversation(
    gw: RunningGateway, fake_provider: FakeProvider
) -> None:
    def conversation(opening: str) -> list[dict[str, str]]:
        return [
            SYSTEM,
            {"role": "user", "content": opening},
            {"role": "assistant", "content": "Here are three options."},
            {"role": "user", "content": "Tell me more about the second one."},
        ]

    ask(gw, "", messages=conversation("Which savings accounts do you offer?"))
    settle(gw)
    # Same follow-up wording, unrelated context: must miss
    assert ask(gw, "", messages=conversation("Which credit cards do you offer?"))[1] == "miss"
    # The very same conversation again may hit
    assert ask(gw, "", messages=conversation("Which savings accounts do you offer?"))[1] == "hit"


def test_client_directives_bypass_and_no_store(gw: RunningGateway, fake_provider: FakeProvider) -> None:
    ask(gw, "What is the daily ATM limit?")
    settle(gw)
    assert (
        ask(gw, "What is the daily ATM limit?", extra_headers={"X-FareGate-Cache": "bypass"})[1] == "bypass"
    )
    assert ask(gw, "What is the daily ATM limit?", extra_headers={"Cache-Control": "no-cache"})[1] == "bypass"
    assert upstream_calls(fake_provider) == 3
    ask(gw, "Do you charge for wires?", extra_headers={"Cache-Control": "no-store"})
    settle(gw)
    assert ask(gw, "Do you charge for wires?")[1] == "miss"  # nothing was stored
    # no-store only forbids storing: a stored answer may still be served
    assert ask(gw, "What is the daily ATM limit?", extra_headers={"Cache-Control": "no-store"})[1] == "hit"


def test_a_cached_answer_streams_as_proper_sse_in_both_protocols(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features=FAQ)
    fake_provider.scenario = Scenario(text="Branches open at nine and close at five on weekdays.")
    ask(gw, "When do branches open?")
    settle(gw)
    client = openai_client(gw, default_headers={"X-FareGate-Feature": "faq", "X-FareGate-Team": "support"})
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini",
        messages=[SYSTEM, {"role": "user", "content": "When do branches open?"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers[HEADER] == "hit"
        chunks = list(response.parse())
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fake_provider.scenario.text
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert upstream_calls(fake_provider) == 1

    claude = anthropic_client(gw, default_headers={"X-FareGate-Feature": "faq", "X-FareGate-Team": "support"})
    body: dict[str, Any] = {
        "model": SONNET,
        "max_tokens": 200,
        "messages": [{"role": "user", "content": "When do branches open?"}],
    }
    with claude.messages.stream(**body) as stream:  # a streamed miss is stored when it ends ...
        first = stream.get_final_message()
    settle(gw)
    with claude.messages.stream(**body) as stream:  # ... and replayed as Anthropic's event sequence
        assert stream.response.headers[HEADER] == "hit"
        replayed = stream.get_final_message()
    assert replayed.content[0].text == first.content[0].text  # type: ignore[union-attr]
    assert replayed.stop_reason == "end_turn"
    hit = gw.events()[-1]
    assert hit.cache_status == "hit" and hit.stream and hit.cost_nusd == 0 and hit.baseline_cost_nusd > 0


def test_entries_expire(make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider) -> None:
    gw = make_gateway(features={"faq": {"semantic_cache": {"ttl_s": 2}}})
    ask(gw, "Is there a fee for paper statements?")
    settle(gw)
    stored_at = time.monotonic()
    assert ask(gw, "Is there a fee for paper statements?")[1] == "hit"
    time.sleep(max(0.0, 2.1 - (time.monotonic() - stored_at)))
    assert ask(gw, "Is there a fee for paper statements?")[1] == "miss"


def test_the_admin_api_invalidates_a_feature(gw: RunningGateway, fake_provider: FakeProvider) -> None:
    ask(gw, "How long does a card replacement take?")
    settle(gw)
    stats = httpx.get(f"{gw.url}/faregate/v1/cache/stats").json()
    faq = next(f for f in stats["features"] if f["feature"] == "faq")
    assert faq["entries"] == 1
    deleted = httpx.delete(f"{gw.url}/faregate/v1/cache", params={"feature": "faq"}).json()
    assert deleted == {"deleted": 1}
    assert ask(gw, "How long does a card replacement take?")[1] == "miss"


def test_verification_sampling_asks_the_provider_too_and_records_the_verdict(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"faq": {"semantic_cache": {"verify_fraction": 1.0}}})
    ask(gw, "How can I reset the PIN of my card?")
    settle(gw)
    _, status = ask(gw, "how do i reset my card's PIN?")
    assert status == "semantic-hit"
    settle(gw)  # the verification runs in the background
    assert upstream_calls(fake_provider) == 2
    verify = [e for e in gw.events() if e.cache_status == "verify"]
    assert len(verify) == 1 and verify[0].cache_verified is True  # the fake answers the same text
    assert verify[0].cost_nusd > 0  # checking costs money: it is in the ledger
    stats = httpx.get(f"{gw.url}/faregate/v1/cache/stats").json()
    faq = next(f for f in stats["features"] if f["feature"] == "faq")
    assert faq["verification"]["verified"] == 1 and faq["verification"]["precision"] == 1.0


VERIFIED = {"faq": {"semantic_cache": {"verify_fraction": 1.0, "threshold": 0.85}}}


def threshold(gw: RunningGateway) -> dict[str, float]:
    stats = httpx.get(f"{gw.url}/faregate/v1/cache/stats").json()
    faq = next(f for f in stats["features"] if f["feature"] == "faq")
    result: dict[str, float] = faq["threshold"]
    return result


def disagree_until_tightened(gw: RunningGateway, fake_provider: FakeProvider) -> None:
    """A cached answer, then 20 semantic hits whose verification gets a different answer each time."""
    fake_provider.scenario = Scenario(text="You can reset it in the app under Settings, then Security.")
    ask(gw, "How can I reset the PIN of my card?")
    settle(gw)
    fake_provider.scenario = Scenario(text="Our branches open at nine and close at five on weekdays.")
    for _ in range(MIN_SAMPLES):
        assert ask(gw, "how do i reset my card's PIN?")[1] == "semantic-hit"
        settle(gw)


def test_verified_answers_that_disagree_tighten_the_threshold(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    """20 checks that all disagree show precision far under 97%: the threshold moves up one step."""
    gw = make_gateway(features=VERIFIED)
    ask(gw, "Do you charge for paper statements?")
    assert threshold(gw) == {"configured": 0.85, "effective": 0.85}
    disagree_until_tightened(gw, fake_provider)
    verify = [e for e in gw.events() if e.cache_status == "verify"]
    assert len(verify) == MIN_SAMPLES and not any(e.cache_verified for e in verify)
    assert threshold(gw) == {"configured": 0.85, "effective": 0.86}
    stats = httpx.get(f"{gw.url}/faregate/v1/cache/stats").json()
    faq = next(f for f in stats["features"] if f["feature"] == "faq")
    assert faq["verification"]["upper_bound_95"] < 0.97
    scrape = httpx.get(f"{gw.url}/metrics").text
    assert 'faregate_cache_threshold{feature="faq"} 0.86' in scrape.splitlines()


def test_a_tightening_reaches_the_other_replicas_and_survives_a_restart(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path}/shared.db"
    first = make_gateway(database=db, features=VERIFIED)
    running = make_gateway(database=db, features=VERIFIED)
    assert running.gateway.caches.stage is not None
    running.gateway.caches.stage.share_every_s = 0.0  # adopt on its next lookup (30 s in production)
    disagree_until_tightened(first, fake_provider)
    settle(first)  # the tightening is written to the shared store in the background
    assert threshold(running)["effective"] == 0.85
    ask(running, "Can I order a new card online?")
    settle(running)
    assert threshold(running)["effective"] == 0.86
    restarted = make_gateway(database=db, features=VERIFIED)
    assert threshold(restarted) == {"configured": 0.85, "effective": 0.86}


def test_features_without_the_cache_are_untouched(gw: RunningGateway, fake_provider: FakeProvider) -> None:
    client = openai_client(gw, default_headers={"X-FareGate-Feature": "chat"})
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
        assert HEADER not in raw.headers
    assert upstream_calls(fake_provider) == 2
    assert all(e.cache_status is None for e in gw.events())
    assert Decimal(0) < gw.events()[0].cost_usd


def test_a_failed_verification_is_recorded_not_swallowed(
    make_gateway: Callable[..., RunningGateway], fake_provider: FakeProvider
) -> None:
    gw = make_gateway(features={"faq": {"semantic_cache": {"verify_fraction": 1.0}}})
    ask(gw, "How can I reset the PIN of my card?")
    settle(gw)
    fake_provider.push(*[Scenario(status=503)] * 3)  # the verification's upstream call and its 2 retries fail
    assert ask(gw, "how do i reset my card's PIN?")[1] == "semantic-hit"  # the client is not affected
    settle(gw)
    (verify,) = [e for e in gw.events() if e.cache_status == "verify"]
    assert verify.status == 503 and verify.error_kind == "upstream_error" and verify.cache_verified is None
