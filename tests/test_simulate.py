"""The simulated workload: deterministic, in the documented envelope format, shaped like real traffic."""

from __future__ import annotations

import gzip
import re
import statistics
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console

from faregate.simulate import EPOCH, FEATURES, generate_workload, write_workload
from faregate.simulate._faq import FAQ_INTENTS
from faregate.tokens import count_messages_anthropic, count_messages_openai, count_text

SAMPLE = 600
_DOCUMENTS = re.compile(r"<documents>.*?</documents>\n\n", re.S)
_CLOCK = re.compile(r"Current date and time: (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


@pytest.fixture(scope="module")
def sample() -> list[dict[str, Any]]:
    return list(generate_workload(SAMPLE, seed=7))


def _system(envelope: dict[str, Any]) -> str:
    body = envelope["request"]
    if envelope["provider"] == "openai":
        return str(body["messages"][0]["content"])
    return str(body["system"][0]["text"])


def _conversation(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages after the system prompt."""
    messages: list[dict[str, Any]] = envelope["request"]["messages"]
    return messages[1:] if envelope["provider"] == "openai" else messages


def _usage(envelope: dict[str, Any]) -> tuple[int, int, int, int]:
    """(input total, cache read, cache write, output) from the provider-specific usage block."""
    usage = envelope["response"]["usage"]
    if envelope["provider"] == "openai":
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        return usage["prompt_tokens"], cached, 0, usage["completion_tokens"]
    read, written = usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]
    return usage["input_tokens"] + read + written, read, written, usage["output_tokens"]


def _query(envelope: dict[str, Any]) -> str:
    return _DOCUMENTS.sub("", _conversation(envelope)[-1]["content"])


def test_same_seed_same_workload_and_other_seeds_differ() -> None:
    first = [orjson.dumps(e) for e in generate_workload(80, seed=3)]
    assert first == [orjson.dumps(e) for e in generate_workload(80, seed=3)]
    assert first != [orjson.dumps(e) for e in generate_workload(80, seed=4)]


def test_exact_count_in_time_order_over_one_day(sample: list[dict[str, Any]]) -> None:
    assert len(sample) == SAMPLE
    times = [datetime.fromisoformat(e["timestamp"]) for e in sample]
    assert times == sorted(times)
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
    assert times[0] >= EPOCH and times[-1] < EPOCH + timedelta(days=1)
    assert times[-1] - times[0] > timedelta(hours=20)  # spread over the day, not bunched
    assert list(generate_workload(0, seed=1)) == []


def test_days_spread_the_period() -> None:
    week = list(generate_workload(300, seed=5, days=7))
    days = {datetime.fromisoformat(e["timestamp"]).date() for e in week}
    assert len(days) == 7
    with pytest.raises(ValueError):
        list(generate_workload(10, seed=1, days=0))


def test_envelope_format(sample: list[dict[str, Any]]) -> None:
    models = {f.name: (f.provider, f.model) for f in FEATURES}
    for envelope in sample:
        assert list(envelope) == ["request", "response", "metadata", "timestamp", "provider"]
        metadata = envelope["metadata"]
        assert set(metadata) == {"feature", "team", "template", "user", "conversation"}
        assert all(isinstance(v, str) and v for v in metadata.values())
        provider, model = models[metadata["feature"]]
        assert envelope["provider"] == provider
        assert envelope["request"]["model"] == model
        assert envelope["timestamp"].endswith("Z")
        response = envelope["response"]
        if provider == "openai":
            assert response["object"] == "chat.completion"
            assert response["id"].startswith("chatcmpl-")
            assert response["choices"][0]["message"]["role"] == "assistant"
            assert envelope["request"]["messages"][0]["role"] == "system"
        else:
            assert response["type"] == "message" and response["id"].startswith("msg_")
            assert response["content"][0]["type"] == "text"
            assert envelope["request"]["max_tokens"] >= _usage(envelope)[3]
            assert envelope["request"]["system"][0]["cache_control"] == {"type": "ephemeral"}
        roles = [m["role"] for m in _conversation(envelope)]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"]
    features = Counter(e["metadata"]["feature"] for e in sample)
    assert set(features) == {"support-faq", "doc-analysis", "chat-assistant"}
    assert any("tools" in e["request"] for e in sample)
    assert any("tools" not in e["request"] for e in sample)


def test_usage_totals_equal_local_counts(sample: list[dict[str, Any]]) -> None:
    for envelope in sample:
        body = envelope["request"]
        total, read, written, output = _usage(envelope)
        if envelope["provider"] == "openai":
            assert total == count_messages_openai(body["model"], body)
            text = envelope["response"]["choices"][0]["message"]["content"]
        else:
            assert total == count_messages_anthropic(body["model"], body)
            text = envelope["response"]["content"][0]["text"]
        assert output == count_text(body["model"], text)
        assert 0 <= read + written <= total


def test_token_shape(sample: list[dict[str, Any]]) -> None:
    systems, contexts, queries = [], [], []
    for envelope in sample:
        model = envelope["request"]["model"]
        systems.append(count_text(model, _system(envelope)))
        found = _DOCUMENTS.search(_conversation(envelope)[-1]["content"])
        if found:
            contexts.append(count_text(model, found.group(0)))
        queries.append(count_text(model, _query(envelope)))
    assert 1500 <= statistics.mean(systems) <= 2500
    assert 2250 <= statistics.mean(contexts) <= 3750
    assert len(contexts) > SAMPLE / 3
    assert 50 <= statistics.mean(queries) <= 150


def test_history_grows_with_every_turn(sample: list[dict[str, Any]]) -> None:
    by_conversation: dict[str, list[int]] = defaultdict(list)
    for envelope in sample:
        model = envelope["request"]["model"]
        history = sum(count_text(model, m["content"]) for m in _conversation(envelope)[:-1])
        by_conversation[envelope["metadata"]["conversation"]].append(history)
    longest = max(len(h) for h in by_conversation.values())
    assert longest >= 10
    for histories in by_conversation.values():
        assert histories[0] == 0
        assert histories == sorted(histories) and len(set(histories)) == len(histories)


def test_faq_traffic_repeats_exactly_and_in_paraphrase(sample: list[dict[str, Any]]) -> None:
    support = [_query(e) for e in sample if e["metadata"]["feature"] == "support-faq"]
    exact = len(support) - len(set(support))
    assert exact / len(support) > 0.15
    phrasings: dict[str, set[str]] = defaultdict(set)
    for intent, questions in FAQ_INTENTS:
        for query in set(support):
            if any(q in query or q[1:] in query for q in questions):
                phrasings[intent].add(query)
    paraphrased = [intent for intent, queries in phrasings.items() if len(queries) >= 3]
    assert len(paraphrased) >= 5


def test_one_feature_has_a_clock_in_its_system_prompt(sample: list[dict[str, Any]]) -> None:
    prompts: dict[str, set[str]] = defaultdict(set)
    for envelope in sample:
        feature, system = envelope["metadata"]["feature"], _system(envelope)
        prompts[feature].add(system)
        clock = _CLOCK.search(system)
        if feature == "chat-assistant":
            assert clock is not None
            assert clock.group(1) == envelope["timestamp"][:19] + "Z"
        else:
            assert clock is None
    assert len(prompts["chat-assistant"]) > 50  # a new prefix on (almost) every request
    assert len(prompts["support-faq"]) <= 3 and len(prompts["doc-analysis"]) <= 3  # a few templates


def test_cached_tokens_follow_prefix_reuse(sample: list[dict[str, Any]]) -> None:
    reads: dict[str, list[int]] = defaultdict(list)
    totals: Counter[str] = Counter()
    writes = 0
    for envelope in sample:
        total, read, written, _ = _usage(envelope)
        reads[envelope["metadata"]["feature"]].append(read)
        totals[envelope["metadata"]["feature"]] += total
        writes += written
        if envelope["provider"] == "openai":
            assert read % 128 == 0 and (read == 0 or read >= 1024)
    # The clock breaks the assistant's prefixes (bar two requests in the same second).
    assert sum(reads["chat-assistant"]) < 0.02 * totals["chat-assistant"]
    assert sum(1 for r in reads["support-faq"] if r) > len(reads["support-faq"]) / 5
    assert any(reads["doc-analysis"]) and writes > 0


def test_outputs_have_a_long_tail(sample: list[dict[str, Any]]) -> None:
    outputs = sorted(_usage(e)[3] for e in sample)
    assert 100 <= statistics.median(outputs) <= 600
    assert outputs[-1] > 2500


@pytest.mark.parametrize("name", ["workload.jsonl", "workload.jsonl.gz"])
def test_write_workload(tmp_path: Path, name: str) -> None:
    out = tmp_path / "nested" / name
    with open(tmp_path / "console.txt", "w") as log:
        written = write_workload(requests=100, out=out, seed=11, console=Console(file=log))
    assert written == 100
    raw = out.read_bytes()
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    lines = raw.splitlines()
    assert [orjson.loads(line) for line in lines] == list(generate_workload(100, seed=11))
