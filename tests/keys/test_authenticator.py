"""The authenticator's cache: verified keys answered from memory, wrong secrets never, expiry honoured."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from faregate.call import Call
from faregate.errors import AuthenticationFailed
from faregate.keys import KeyRecord, KeyStore, open_key_store
from faregate.server.auth import Authenticator


class CountingStore:
    """A real SQLite key store that counts its reads."""

    def __init__(self, inner: KeyStore) -> None:
        self.inner = inner
        self.reads = 0

    def get(self, key_id: str) -> KeyRecord | None:
        self.reads += 1
        return self.inner.get(key_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    inner = open_key_store(f"sqlite:///{tmp_path}/ledger.db")
    yield CountingStore(inner)
    inner.close()


def call_with(key: str | None, **headers: str) -> Call:
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return Call(
        request_id="r",
        protocol="openai",
        body={},
        raw_body=b"",
        model_requested="",
        stream=False,
        headers=headers,
    )


async def test_a_cached_key_is_verified_without_reading_the_store(store: Any) -> None:
    key, record = store.inner.create("search", budget_usd="3")
    auth = Authenticator(store, 60.0)

    for _ in range(5):
        call = call_with(key, **{"x-faregate-team": "ads"})
        assert await auth.authenticate(call) == record
        assert (call.key_id, call.attribution.team, call.tenant) == (record.id, "search", "team:search")
    assert store.reads == 1
    budget = auth.key_budget(record.id)
    assert budget is not None and (budget.scope, budget.name) == ("key", record.id)


async def test_a_wrong_secret_for_a_cached_id_is_refused(store: Any) -> None:
    key, _ = store.inner.create("search")
    auth = Authenticator(store, 60.0)
    await auth.authenticate(call_with(key))

    forged = key[:-3] + ("xyz" if not key.endswith("xyz") else "abc")
    with pytest.raises(AuthenticationFailed) as raised:
        await auth.authenticate(call_with(forged))
    assert forged not in raised.value.message and key not in raised.value.message


async def test_concurrent_misses_share_one_read_and_expiry_rereads(store: Any) -> None:
    key, record = store.inner.create("search")
    auth = Authenticator(store, 0.05)

    results = await asyncio.gather(*(auth.authenticate(call_with(key)) for _ in range(20)))
    assert results == [record] * 20 and store.reads == 1
    store.inner.revoke(record.id)
    await asyncio.sleep(0.06)
    with pytest.raises(AuthenticationFailed):
        await auth.authenticate(call_with(key))
    assert store.reads == 2 and auth.key_budget(record.id) is None


async def test_missing_and_malformed_keys_never_reach_the_store(store: Any) -> None:
    auth = Authenticator(store, 60.0)
    for call in (call_with(None), call_with("sk-provider-key"), call_with("fgk-short")):
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(call)
    assert store.reads == 0
