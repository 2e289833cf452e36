"""The HTTP server: routing, the scenario queue, the request log, and the two ways to run it.

A test thread drives the fake (push scenarios, read the log) while the server runs on another
thread's loop, so the shared state sits behind one lock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Protocol

import orjson
from aiohttp import web

from . import anthropic_messages, openai_chat
from ._common import Faults, ReceivedRequest, Scenario, dumps, split_events, write_stream
from ._prompt_cache import PromptCache

Problem = tuple[int, dict[str, Any]]
# The 5xx a random `error` fault answers with, per wire format (529: Anthropic's "overloaded").
_FAULT_STATUSES = {"openai": (500, 503), "anthropic": (500, 529)}


class WireFormat(Protocol):
    """What a format module offers the server (both format modules satisfy it)."""

    NAME: str

    def error_body(
        self,
        status: int,
        message: str | None = None,
        *,
        model: str = "",
        param: str | None = None,
        code: str | None = None,
    ) -> dict[str, Any]: ...
    def new_request_id(self) -> str: ...
    def response_headers(self, request_id: str) -> dict[str, str]: ...
    def check_auth(self, headers: Mapping[str, str], api_key: str) -> Problem | None: ...
    def invalid_json(self, detail: str) -> Problem: ...
    def validate(self, body: dict[str, Any], headers: Mapping[str, str]) -> Problem | None: ...
    def models_body(self) -> dict[str, Any]: ...
    def stream_events(self, body: dict[str, Any], scenario: Scenario) -> list[bytes]: ...
    async def respond(
        self, request: web.Request, body: dict[str, Any], scenario: Scenario, headers: dict[str, str]
    ) -> web.StreamResponse: ...


class _State:
    def __init__(
        self, scenario: Scenario | None, api_key: str | None, record: bool, simulate_prompt_cache: bool
    ) -> None:
        self.lock = threading.Lock()
        self.scenario = scenario or Scenario()
        self.queue: deque[Scenario] = deque()
        self.requests: list[ReceivedRequest] = []
        self.api_key = api_key
        self.record = record
        self.simulate_prompt_cache = simulate_prompt_cache
        self.prompt_cache = PromptCache()
        self.faults = Faults()
        self.rng = random.Random()

    def set_faults(self, faults: Faults) -> None:
        with self.lock:
            self.faults = faults
            self.rng = random.Random(faults.seed)

    def next_scenario(self) -> tuple[Scenario, str | None]:
        """The next queued scenario, else the default one and the random fault drawn for it."""
        with self.lock:
            faults = self.faults
            if faults.down:  # down: nothing answers, queued scenarios wait for it to come back
                return self.scenario, "disconnect"
            if self.queue:
                return self.queue.popleft(), None
            return self.scenario, faults.draw(self.rng) if faults.active else None

    def log(self, entry: ReceivedRequest) -> None:
        if self.record:
            with self.lock:
                self.requests.append(entry)


_STATE = web.AppKey("fake_provider_state", _State)


def _json(status: int, body: dict[str, Any], headers: dict[str, str]) -> web.Response:
    headers["Content-Type"] = "application/json"
    return web.Response(status=status, body=dumps(body), headers=headers)


def _log(request: web.Request, raw: bytes, body: dict[str, Any] | None) -> dict[str, str]:
    headers = {name.lower(): value for name, value in request.headers.items()}
    request.app[_STATE].log(ReceivedRequest(request.method, request.path, headers, body, raw))
    return headers


async def _complete(request: web.Request, fmt: WireFormat) -> web.StreamResponse:
    """Checks run in the real APIs' order (key, JSON, schema) before the scenario's delay and status.

    Every completion request consumes one queued scenario, even one rejected as invalid, so a test
    that pushes N scenarios can count on exactly the next N requests taking them.
    """
    state = request.app[_STATE]
    raw = await request.read()
    parsed: Any = None
    problem: Problem | None = None
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        problem = fmt.invalid_json(str(exc))
    body = parsed if isinstance(parsed, dict) else None
    headers = _log(request, raw, body)
    scenario, fault = state.next_scenario()
    if fault == "disconnect" and (state.faults.down or not (body and body.get("stream") is True)):
        return _drop(request)
    rid = fmt.new_request_id()
    reply_headers = fmt.response_headers(rid)
    reply_headers.update(scenario.headers)
    if state.api_key is not None:
        problem = fmt.check_auth(headers, state.api_key) or problem
    if problem is None and body is None:
        problem = fmt.invalid_json("expected a JSON object")
    if problem is None and body is not None:
        problem = fmt.validate(body, headers)
    if problem is None and fault is not None:
        if fault == "timeout":
            await asyncio.sleep(state.faults.hang_s)
        elif fault == "rate_limit":
            reply_headers["retry-after"] = f"{state.faults.retry_after_s:g}"
            scenario = Scenario(status=429)
        elif fault == "error":
            scenario = Scenario(status=state.rng.choice(_FAULT_STATUSES[fmt.NAME]))
    if problem is None and scenario.delay > 0:
        await asyncio.sleep(scenario.delay)
    if problem is None and scenario.status >= 400:
        if scenario.error_body is not None:  # verbatim: the test may be probing odd bodies
            return _json(scenario.status, scenario.error_body, reply_headers)
        model = str(body.get("model", "")) if body else ""
        problem = scenario.status, fmt.error_body(scenario.status, model=model)
    if problem is not None:
        status, error = problem
        if fmt.NAME == anthropic_messages.NAME:  # Anthropic repeats the request id in error bodies
            error["request_id"] = rid
        return _json(status, error, reply_headers)
    assert body is not None
    if scenario.replays:
        return await _replay(request, body, scenario, reply_headers)
    if state.simulate_prompt_cache:  # only answered requests touch the cache, as with the real APIs
        scenario = state.prompt_cache.usage(fmt.NAME, body).applied_to(scenario)
    if fault == "disconnect":  # a stream: cut half-way, after some text went out
        frames = fmt.stream_events(body, scenario)
        return await write_stream(request, frames, scenario.chunk_delay, reply_headers, len(frames) // 2)
    return await fmt.respond(request, body, scenario, reply_headers)


def _drop(request: web.Request) -> web.Response:
    """Close the connection without answering: the client sees "server disconnected"."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


async def _replay(
    request: web.Request, body: dict[str, Any], scenario: Scenario, headers: dict[str, str]
) -> web.StreamResponse:
    """Recorded bytes, verbatim: SSE for a streaming request when recorded, else the JSON body."""
    stream = scenario.replay_stream
    if stream is not None and (body.get("stream") is True or scenario.replay_body is None):
        return await write_stream(request, split_events(stream), scenario.chunk_delay, headers)
    headers["Content-Type"] = "application/json"
    return web.Response(body=scenario.replay_body, headers=headers)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    return await _complete(request, openai_chat)


async def _messages(request: web.Request) -> web.StreamResponse:
    return await _complete(request, anthropic_messages)


async def _models(request: web.Request) -> web.StreamResponse:
    """One path, two formats: the Anthropic SDK always sends `anthropic-version`, OpenAI's never does."""
    headers = _log(request, b"", None)
    fmt: WireFormat = anthropic_messages if "anthropic-version" in headers else openai_chat
    return _json(200, fmt.models_body(), fmt.response_headers(fmt.new_request_id()))


async def _unknown(request: web.Request) -> web.StreamResponse:
    """A wrong path (say `/v1/v1/messages`) gets the provider's JSON 404, not aiohttp's text page."""
    headers = _log(request, await request.read(), None)
    if "anthropic-version" in headers:
        body = anthropic_messages.error_body(404, "Not Found")
        return _json(404, body, anthropic_messages.response_headers(anthropic_messages.new_request_id()))
    error = {
        "message": f"Invalid URL ({request.method} {request.path})",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    return _json(404, {"error": error}, openai_chat.response_headers(openai_chat.new_request_id()))


def create_app(state: _State) -> web.Application:
    app = web.Application()
    app[_STATE] = state
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_post("/v1/messages", _messages)
    app.router.add_get("/v1/models", _models)
    app.router.add_route("*", "/{tail:.*}", _unknown)
    return app


class FakeProvider:
    """A loopback OpenAI + Anthropic server whose answers a test scripts with `Scenario`s.

    `with FakeProvider() as fake:` runs it on a background thread (for sync tests and SDK clients);
    `async with FakeProvider() as fake:` (or `await serve()`) runs it on the caller's loop.
    `simulate_prompt_cache=True` (or `fake.prompt_cache = True`) derives prompt and cache token counts
    from the requests themselves (see `_prompt_cache`); `reset()` turns it off again.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        scenario: Scenario | None = None,
        api_key: str | None = None,
        record: bool = True,
        simulate_prompt_cache: bool = False,
        faults: Faults | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._state = _State(scenario, api_key, record, simulate_prompt_cache)
        if faults is not None:
            self._state.set_faults(faults)
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeProvider is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def scenario(self) -> Scenario:
        return self._state.scenario

    @scenario.setter
    def scenario(self, value: Scenario) -> None:
        self._state.scenario = value

    @property
    def faults(self) -> Faults:
        """Random failures for requests no queued scenario answers (see `Faults`); settable live."""
        return self._state.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self._state.set_faults(value)

    @property
    def down(self) -> bool:
        """Drop every connection (a provider that is down); `fake.down = False` brings it back."""
        return self._state.faults.down

    @down.setter
    def down(self, value: bool) -> None:
        self._state.set_faults(dataclasses.replace(self._state.faults, down=value))

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot: the server thread may append while the caller iterates."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def prompt_cache(self) -> bool:
        """Whether usage comes from the prompt-cache simulation rather than the scenario's counts."""
        return self._state.simulate_prompt_cache

    @prompt_cache.setter
    def prompt_cache(self, on: bool) -> None:
        """Switching the simulation on or off starts it from an empty cache and a reset clock."""
        with self._state.lock:
            if on != self._state.simulate_prompt_cache:
                self._state.prompt_cache.clear()
            self._state.simulate_prompt_cache = on

    def advance_prompt_cache_clock(self, seconds: float) -> None:
        """Age every prompt-cache entry by `seconds`, so TTL tests need not sleep."""
        self._state.prompt_cache.advance(seconds)

    def push(self, *scenarios: Scenario) -> None:
        """Queue scenarios, each answering exactly one completion request (FIFO), then the default."""
        with self._state.lock:
            self._state.queue.extend(scenarios)

    def reset(self) -> None:
        """Default scenario, empty queue and log, prompt-cache simulation off and emptied."""
        with self._state.lock:
            self._state.scenario = Scenario()
            self._state.queue.clear()
            self._state.requests.clear()
            self._state.simulate_prompt_cache = False
            self._state.prompt_cache.clear()
            self._state.faults = Faults()

    async def start_async(self) -> None:
        """Listen on the running loop; port 0 becomes the free port the OS chose."""
        if self._runner is not None:
            raise RuntimeError("FakeProvider is already running")
        runner = web.AppRunner(create_app(self._state), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop_async(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def start(self) -> FakeProvider:
        """Run on a daemon thread with its own loop; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeProvider is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        thread = threading.Thread(target=run, name=f"fake-provider-{id(self):x}", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            thread.join()
            raise failure[0]
        self._thread, self._loop = thread, loop
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = self._loop = None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeProvider:
        await self.start_async()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    scenario: Scenario | None = None,
    *,
    api_key: str | None = None,
    simulate_prompt_cache: bool = False,
    faults: Faults | None = None,
) -> FakeProvider:
    """Start a fake on the running loop (for `faregate demo`); `await fake.stop_async()` to stop."""
    fake = FakeProvider(
        host,
        port,
        scenario=scenario,
        api_key=api_key,
        simulate_prompt_cache=simulate_prompt_cache,
        faults=faults,
    )
    await fake.start_async()
    return fake
