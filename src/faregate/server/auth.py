"""Who may call the proxy routes: FareGate virtual keys, checked on every request (`auth.virtual_keys`).

A client sends its virtual key where its SDK sends a provider key (`Authorization: Bearer <key>`
for OpenAI clients, `x-api-key: <key>` for Anthropic ones). The key's team becomes the call's team
(over any `X-FareGate-Team` header: a client cannot charge or read another team), its id the
call's `key_id` (ledger, `scope: key` budgets), and `team:<team>` the call's tenant, which scopes
the response caches and conversation histories: two teams never see each other's entries, while
every key of one team shares them. The tenant is the team name in plain (not a hash) so an
operator can name it, e.g. `DELETE /faregate/v1/cache?tenant=team:search`.

The hot path: a key checked within the last `auth.key_cache_s` seconds is verified from memory
with one SHA-256 of the presented secret and a constant-time comparison against the digest
cached when the database confirmed it (about a microsecond). A miss reads the key's row off the
event loop; concurrent misses for one key share that read. Unknown, malformed, revoked or absent
keys are answered 401 with a message that never repeats what the client sent.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from faregate.call import Call
from faregate.config import BudgetSettings, Config
from faregate.errors import AuthenticationFailed, ConfigError, FareGateError, PermissionDenied
from faregate.keys import KeyRecord, KeyStore, credential, open_key_store
from faregate.pipeline.budget import client_credential

log = logging.getLogger("faregate.auth")
VIEWER = "faregate.viewer"  # the ASGI scope key holding the virtual key an admin request used
Handler = Callable[[Request], Awaitable[Response]]
MAX_CACHED = 100_000  # keys remembered at once; beyond it the expired ones go, then all
TENANT_PREFIX = "team:"
MISSING = (
    "missing API key: send a FareGate virtual key as 'Authorization: Bearer <key>' or 'x-api-key: <key>' "
    "(create one with `faregate keys create --team TEAM`)"
)
INVALID = "invalid API key: this FareGate virtual key is unknown or has been revoked"


@dataclass(slots=True)
class _Entry:
    """A key id's last database answer: the record (None: unknown or revoked) and, once a secret
    was verified against it, that secret's digest."""

    record: KeyRecord | None
    fingerprint: bytes | None
    expires: float


def viewer(request: Request) -> KeyRecord | None:
    """The virtual key an admin API request was allowed with (its team scopes the answer); None for
    the admin key, or a loopback client when no admin key is set: those see everything."""
    record = request.scope.get(VIEWER)
    return record if isinstance(record, KeyRecord) else None


class Guard(Protocol):
    """The admin API's guard: `team_view` lets a virtual key GET the handler, scoped to its team."""

    def __call__(self, handler: Handler, *, team_view: bool = False) -> Handler: ...


def tenant_for(team: str) -> str:
    return TENANT_PREFIX + team


class Authenticator:
    """Verifies virtual keys for the proxy routes, caching each verdict for `cache_s` seconds."""

    def __init__(self, store: KeyStore, cache_s: float) -> None:
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[str, _Entry] = {}
        self._reading: dict[str, asyncio.Future[KeyRecord | None]] = {}
        # Budgets of keys verified by this process: the budget stage reads them (never evicted by the
        # cache's size bound, so a verified call always finds its key's budget).
        self._budgets: dict[str, BudgetSettings] = {}

    async def authenticate(self, call: Call) -> KeyRecord:
        """Verify the call's key and attribute the call to it; AuthenticationFailed (401) if not."""
        key = client_credential(call.headers)
        if key is None:
            raise AuthenticationFailed(MISSING)
        record = await self.verify(key)
        if record is None:
            raise AuthenticationFailed(INVALID)
        call.key_id = record.id
        call.attribution.team = record.team
        call.tenant = tenant_for(record.team)
        return record

    async def allowed_models(self, headers: Mapping[str, str]) -> tuple[str, ...] | None:
        """The models a request's key may use (None: any); AuthenticationFailed (401) without a
        valid key. For `GET /v1/models`, which lists only what the key can call."""
        key = client_credential(headers)
        if key is None:
            raise AuthenticationFailed(MISSING)
        record = await self.verify(key)
        if record is None:
            raise AuthenticationFailed(INVALID)
        return record.models

    async def verify(self, key: str) -> KeyRecord | None:
        parts = credential.parse(key)
        if parts is None:
            return None
        now = time.monotonic()
        entry = self._cache.get(parts.id)
        if entry is None or entry.expires <= now:
            entry = await self._refresh(parts.id, now)
        record = entry.record
        if record is None:
            return None
        digest = credential.fingerprint(parts.secret)
        if entry.fingerprint is not None:
            return record if hmac.compare_digest(digest, entry.fingerprint) else None
        if not credential.matches(record.salt, record.hash, parts.secret):
            return None
        entry.fingerprint = digest  # only a secret the stored hash confirmed is remembered
        return record

    async def _refresh(self, key_id: str, now: float) -> _Entry:
        reading = self._reading.get(key_id)
        if reading is None:  # concurrent misses for one key share one database read
            reading = asyncio.ensure_future(asyncio.to_thread(self.store.get, key_id))
            self._reading[key_id] = reading
            reading.add_done_callback(lambda _: self._reading.pop(key_id, None))
        try:
            record = await asyncio.shield(reading)
        except Exception as exc:  # fail closed; a 500, not a 401: the key may well be fine
            log.exception("reading a virtual key failed")
            raise FareGateError("FareGate could not check this API key; try again shortly") from exc
        if record is not None and record.revoked:
            record = None
        entry = self._cache.get(key_id)
        if entry is None or entry.expires <= now or entry.record != record:
            entry = _Entry(record, None, now + self.cache_s)
            self._remember(key_id, entry, now)
        if record is None:
            self._budgets.pop(key_id, None)
        elif (budget := record.budget()) is not None:
            self._budgets[key_id] = budget
        return entry

    def _remember(self, key_id: str, entry: _Entry, now: float) -> None:
        if len(self._cache) >= MAX_CACHED:
            self._cache = {k: e for k, e in self._cache.items() if e.expires > now}
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
        self._cache[key_id] = entry

    def key_budget(self, key_id: str) -> BudgetSettings | None:
        """The budget of a key this process verified (scope `key`, named by the key id), or None."""
        return self._budgets.get(key_id)

    def close(self) -> None:
        self.store.close()


def check_model(call: Call, record: KeyRecord) -> None:
    """403 when the key's allow-list does not name the model the client asked for (`auto` too):
    the check is on what the client asked, not where routing or a fallback sent the call."""
    if record.models is not None and call.model_requested not in record.models:
        allowed = ", ".join(record.models)
        raise PermissionDenied(
            f"this API key may not use model {call.model_requested!r}; its models: {allowed}"
        )


def build_authenticator(config: Config) -> Authenticator | None:
    """The authenticator when `auth.virtual_keys` is on, else None (the proxy routes stay open).

    With virtual keys the client's credential is never forwarded upstream, so an OpenAI or Anthropic
    provider without a key in the gateway's environment could only fail: refuse to start instead.
    An `openai-compatible` server may need no key (a local vLLM or Ollama); it gets none.
    """
    if not config.auth.virtual_keys:
        return None
    for name, provider in config.providers.items():
        if provider.type == "openai-compatible" or provider.api_key():
            continue
        where = f"the environment variable {provider.api_key_env}" if provider.api_key_env else "api_key_env"
        raise ConfigError(
            f"providers.{name}: auth.virtual_keys is on, so clients' keys are never sent upstream and "
            f"FareGate needs its own key for {name!r}; set {where}"
            + ("" if provider.api_key_env else f" (providers.{name}.api_key_env: OPENAI_API_KEY, say)")
        )
    return Authenticator(open_key_store(config.database), config.auth.key_cache_s)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`: only this machine can connect."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a hostname or "" (every interface): assume reachable from elsewhere
        return False


def unprotected_bind(config: Config, host: str) -> str | None:
    """Why serving on `host` would expose an unauthenticated gateway, saying what to set; else None.

    Off loopback, anyone who can reach the port could spend the provider keys and read every
    team's numbers, so both the proxy routes (virtual keys) and the admin API (admin key) must
    be protected before FareGate listens there.
    """
    if is_loopback(host):
        return None
    missing: list[str] = []
    if not config.auth.virtual_keys:
        missing.append("auth.virtual_keys: true")
    key_env = config.server.admin_key_env
    if not key_env:
        missing.append("server.admin_key_env: FAREGATE_ADMIN_KEY (and that variable in the environment)")
    elif not os.environ.get(key_env):
        missing.append(f"the environment variable {key_env} (server.admin_key_env) to the admin key")
    if not missing:
        return None
    return (
        f"refusing to listen on {host!r} without authentication: anyone who can reach it could spend "
        f"your provider keys. Set {' and '.join(missing)}, then create keys with "
        "`faregate keys create --team TEAM`; or listen on 127.0.0.1 (server.host)."
    )
