"""The last stage: send the call to its provider over a shared aiohttp pool and relay the answer.

Non-streaming bodies go back byte-for-byte; streams are relayed event by event through the
provider's `StreamTap`, which reads usage on the way. When the upstream fails, in order:

1. retry it (`retry.RetryPolicy`: 408/409/429/5xx/529, connection errors and timeouts; full-jitter
   backoff or the provider's `Retry-After`), re-sending the same bytes;
2. then try the route's fallbacks (`fallback.fallback_chains`), each with its own retries;
3. skip any upstream whose circuit is open (`breaker.Breaker`), without waiting on it.

When nothing answers, the last upstream's own error goes back (its status and body), or 502 / 504 /
503 (unreachable, too slow, every circuit open). A stream is retried only until its first byte is
relayed: after that the client has a 200, so a failure ends the stream with an in-band error event
and the call is recorded as partial. Retries and fallbacks are on the `Result`, hence in the ledger.

Timeouts (per attempt): `connect_timeout_s` to connect; a full response must arrive within the
provider's `timeout_s`; a stream's headers, then each chunk, within `timeout_s` of the previous
read. `X-FareGate-Timeout: <seconds>` sets a deadline for the whole call (retries and fallbacks
included), never longer than the configured timeouts.

The path without failures does what it did before any of this: one dict lookup for the fallback
chain, one `allow()` and one `record()` on the provider's breaker, no extra await.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
import orjson

from faregate import tokens
from faregate.call import Call, Result, Route
from faregate.config import ModelSettings, UpstreamSettings
from faregate.errors import FareGateError, InvalidRequest, UpstreamTimeout, UpstreamUnavailable
from faregate.pipeline.base import Next
from faregate.pipeline.breaker import Breaker, Breakers, CircuitOpen, State
from faregate.pipeline.fallback import NO_FALLBACKS, describe, fallback_chains
from faregate.pipeline.retry import FAILURE_STATUSES, RETRY_STATUSES, RetryPolicy
from faregate.pipeline.settle import error_result
from faregate.protocols import BY_NAME
from faregate.providers import Provider
from faregate.providers.base import PASS_THROUGH_HEADERS, PASS_THROUGH_PREFIXES

log = logging.getLogger("faregate.upstream")
TIMEOUT_HEADER = "x-faregate-timeout"
FALLBACK_HEADER = "x-faregate-fallback"


def pass_through_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in upstream.items():
        lower = name.lower()
        if lower in PASS_THROUGH_HEADERS or lower.startswith(PASS_THROUGH_PREFIXES):
            headers[lower] = value
    return headers


class _Failed:
    """Why one upstream gave no answer the client should get: its last error response (retryable)
    or error, and whether an attempt was made at all (a skipped open circuit is not one)."""

    __slots__ = ("attempted", "error", "reason", "response")

    def __init__(
        self, reason: str, *, response: Result | None = None, error: FareGateError | None = None
    ) -> None:
        self.reason = reason
        self.response = response
        self.error = error
        self.attempted = response is not None or not isinstance(error, CircuitOpen)


class Upstream:
    def __init__(
        self,
        providers: dict[str, Provider],
        connect_timeout_s: float,
        settings: UpstreamSettings | None = None,
        models: Mapping[str, ModelSettings] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = random.random,
    ) -> None:
        settings = settings or UpstreamSettings()
        self.providers = providers
        self.session: aiohttp.ClientSession | None = None
        self.policy = RetryPolicy(settings, random)
        self.breakers = Breakers(
            list(providers), settings.breaker_failures, settings.breaker_cooldown_s, clock
        )
        self._breakers = self.breakers.by_name  # one dict lookup on the request path
        self.chains = fallback_chains(models or {})
        self._clock = clock
        self._connect = connect_timeout_s
        # (full response, stream) per provider: built once, shared by every request
        self._timeouts = {
            name: (
                aiohttp.ClientTimeout(total=p.timeout_s, connect=connect_timeout_s),
                aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=p.timeout_s),
            )
            for name, p in providers.items()
        }

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300)
        self.session = aiohttp.ClientSession(
            connector=connector, skip_auto_headers=("User-Agent",), auto_decompress=True
        )

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()

    def breaker_states(self) -> dict[str, State]:
        """Provider → circuit state ("closed", "open", "half_open"), for metrics and the admin API."""
        return self.breakers.states()

    async def __call__(self, call: Call, next: Next) -> Result:
        route = call.route
        assert route is not None and self.session is not None
        deadline = None if TIMEOUT_HEADER not in call.headers else self._deadline(call)
        started = time.perf_counter()
        outcome = await self._through(call, route, deadline, started)
        if isinstance(outcome, Result):  # the first upstream answered: the common path
            return outcome
        retries = outcome.retries
        hops = [describe(route, outcome.failed.reason)]
        last = (route, outcome.failed) if outcome.failed.attempted else None
        for fallback in self.chains.get((route.provider, route.model), NO_FALLBACKS):
            if deadline is not None and self._clock() >= deadline:
                break
            call.route = fallback
            answer = await self._through(call, fallback, deadline, started)
            if isinstance(answer, Result):
                answer.retries += retries
                answer.fallbacks = ">".join(hops)
                if answer.status < 400:
                    answer.headers[FALLBACK_HEADER] = f"{fallback.provider}/{fallback.model}"
                log.debug(
                    "fallback answered",
                    extra={"request_id": call.request_id, "fallbacks": answer.fallbacks},
                )
                return answer
            retries += answer.retries
            hops.append(describe(fallback, answer.failed.reason))
            if answer.failed.attempted:
                last = (fallback, answer.failed)
        return self._give_up(call, route, last, retries, hops)

    def _give_up(
        self, call: Call, first: Route, last: tuple[Route, _Failed] | None, retries: int, hops: list[str]
    ) -> Result:
        """Nothing answered: the last tried upstream's own error, else why (timeout, unreachable,
        circuits open). The ledger names that upstream, and every hop tried or skipped."""
        if last is None:  # every circuit open: the ledger names where the call was going
            call.route = first
            error: FareGateError = CircuitOpen(
                f"circuit open for provider '{first.provider}'"
                + (" and its fallbacks" if len(hops) > 1 else "")
                + f": retry in {math.ceil(self.breakers[first.provider].retry_in())}s"
            )
            result = error_result(call, error)
        else:
            call.route, failed = last
            if failed.response is not None:
                result = failed.response
            else:
                assert failed.error is not None
                result = error_result(call, failed.error)
        result.retries = retries
        result.fallbacks = ">".join(hops) if len(hops) > 1 else None
        return result

    async def _through(
        self, call: Call, route: Route, deadline: float | None, started: float
    ) -> Result | _Outcome:
        """One upstream, with its retries: its answer, or why it gave none."""
        provider = self.providers[route.provider]
        breaker = self._breakers[route.provider]
        shared = self._timeouts[route.provider][call.stream]
        body = orjson.dumps(provider.prepare_body(call))  # the same bytes on every retry
        failure: _Failed | None = None
        retry = 0
        while True:
            if not breaker.allow():
                if failure is not None:  # opened while we waited to retry: that failure stands
                    return _Outcome(failure, retry - 1)
                error = CircuitOpen(f"circuit open for provider '{provider.name}'")
                return _Outcome(_Failed("circuit_open", error=error), retry)
            timeout = shared if deadline is None else self._timeout(provider, shared, deadline)
            if timeout is None:  # the client's deadline passed: no time for another attempt
                breaker.release()
                if failure is not None:
                    return _Outcome(failure, retry - 1)
                return _Outcome(_Failed("timeout", error=_deadline_passed(provider)), retry)
            try:
                result = await self._send(call, provider, breaker, body, timeout, started)
            except FareGateError as exc:
                if timeout is not shared and isinstance(exc, UpstreamTimeout):
                    breaker.release()  # cut short by the client's deadline: says nothing of the provider
                    return _Outcome(_Failed("timeout", error=exc), retry)
                self._record(breaker, provider.name, False)
                failure = _Failed("timeout" if isinstance(exc, UpstreamTimeout) else "unreachable", error=exc)
                headers: Mapping[str, str] | None = None
            except BaseException:
                breaker.release()  # cancelled (the client left): the probe, if it was one, is given back
                raise
            else:
                status = result.status
                if status not in RETRY_STATUSES:
                    if breaker.state == "closed":
                        breaker.record(True)
                    else:  # a probe that succeeded, or a late answer: the circuit closes (logged)
                        self._record(breaker, provider.name, True)
                    if retry:
                        result.retries = retry
                    return result
                self._record(breaker, provider.name, status not in FAILURE_STATUSES)
                failure = _Failed(str(status), response=result)
                headers = result.headers
            wait = self.policy.delay(retry, headers)
            if wait is None or (deadline is not None and self._clock() + wait >= deadline):
                return _Outcome(failure, retry)
            await asyncio.sleep(wait)
            retry += 1

    def _record(self, breaker: Breaker, name: str, success: bool) -> None:
        was = breaker.state
        breaker.record(success)
        if breaker.state == "open" and was != "open":
            log.warning("circuit opened for provider %s", name, extra={"provider": name})
        elif breaker.state == "closed" and was != "closed":
            log.info("circuit closed for provider %s", name, extra={"provider": name})

    def _deadline(self, call: Call) -> float | None:
        raw = call.headers.get(TIMEOUT_HEADER)
        if raw is None:
            return None
        try:
            seconds = float(raw)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and seconds > 0):
            raise InvalidRequest(f"X-FareGate-Timeout must be a positive number of seconds, not {raw!r}")
        return self._clock() + seconds

    def _timeout(
        self, provider: Provider, shared: aiohttp.ClientTimeout, deadline: float
    ) -> aiohttp.ClientTimeout | None:
        """The shared per-provider timeout, or a shorter one that ends at the client's deadline."""
        left = deadline - self._clock()
        if left <= 0:
            return None
        if left >= provider.timeout_s:
            return shared
        connect = min(self._connect, left)
        if shared.sock_read is not None:  # a stream's
            return aiohttp.ClientTimeout(total=None, connect=connect, sock_read=left)
        return aiohttp.ClientTimeout(total=left, connect=connect)

    async def _send(
        self,
        call: Call,
        provider: Provider,
        breaker: Breaker,
        body: bytes,
        timeout: aiohttp.ClientTimeout,
        started: float,
    ) -> Result:
        """One attempt. Raises UpstreamTimeout / UpstreamUnavailable when no response came back."""
        assert self.session is not None
        try:
            response = await self.session.post(
                provider.endpoint(), data=body, headers=provider.request_headers(call), timeout=timeout
            )
        except TimeoutError:
            raise UpstreamTimeout(f"provider '{provider.name}' did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"provider '{provider.name}' is unreachable: {_reason(exc)}") from None
        if call.stream and response.status < 400:
            return self._relay_stream(call, provider, breaker, response, started)
        try:
            data = await response.read()
        except TimeoutError:
            raise UpstreamTimeout(f"provider '{provider.name}' did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"provider '{provider.name}' failed mid-response: {_reason(exc)}"
            ) from None
        finally:
            response.release()
        result = Result(
            status=response.status,
            headers=pass_through_headers(response.headers),
            body=data,
            upstream_ms=(time.perf_counter() - started) * 1000,
        )
        if response.status >= 400:
            result.error_kind = "upstream_error"
            if (wait_ms := response.headers.get("retry-after-ms")) is not None:
                result.headers["retry-after-ms"] = wait_ms  # OpenAI's precise Retry-After: ours and the SDK's
            return result
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return result
        if isinstance(parsed, dict):
            result.usage, result.model_used, text = provider.read_response(parsed)
            result.output_text.append(text)
            result.stop_reason = stop_reason(parsed)
        return result

    def _relay_stream(
        self,
        call: Call,
        provider: Provider,
        breaker: Breaker,
        response: aiohttp.ClientResponse,
        started: float,
    ) -> Result:
        result = Result(status=response.status, headers=pass_through_headers(response.headers))
        tap = provider.stream_tap(call)
        protocol = BY_NAME[call.protocol]

        async def relay() -> AsyncIterator[bytes]:
            failure: UpstreamTimeout | UpstreamUnavailable | None = None
            try:
                async for data in response.content.iter_any():
                    out = tap.feed(data)
                    if out:
                        yield out
                rest = tap.flush()
                if rest:
                    yield rest
            except TimeoutError:
                failure = UpstreamTimeout(f"provider '{provider.name}' stalled mid-stream")
            except aiohttp.ClientError as exc:
                failure = UpstreamUnavailable(f"provider '{provider.name}' failed mid-stream: {_reason(exc)}")
            except (asyncio.CancelledError, GeneratorExit):
                result.error_kind = "client_disconnected"
                raise
            finally:
                response.release()
                result.upstream_ms = (time.perf_counter() - started) * 1000
                result.usage, result.model_used, result.output_text = tap.usage, tap.model, tap.text
                result.stop_reason = tap.stop_reason
                if failure is not None:
                    result.error_kind = failure.kind
                    result.partial = True
                    self._record(breaker, provider.name, False)
                    _count_partial_output(call, result)
                for callback in result.on_complete:
                    callback(result)
            if failure is not None:  # the client already has a 200: tell it in-band
                yield protocol.render_stream_error(failure)

        result.stream = relay()
        return result


class _Outcome:
    """An upstream that gave no answer: why, and how many retries it took to give up."""

    __slots__ = ("failed", "retries")

    def __init__(self, failed: _Failed, retries: int) -> None:
        self.failed = failed
        self.retries = retries


def _count_partial_output(call: Call, result: Result) -> None:
    """A stream cut short rarely carries its final usage: Anthropic's `message_start` reports input
    and ~1 output token, the rest comes at the end. Count the output text seen so it is billed; with
    no usage at all settle estimates both sides from the request and the text."""
    usage = result.usage
    if usage is None or call.route is None:
        return
    seen = tokens.count_text(result.model_used or call.route.model, "".join(result.output_text))
    if seen > usage.output_tokens:
        usage.output_tokens = seen
        usage.estimated = True


def _deadline_passed(provider: Provider) -> UpstreamTimeout:
    return UpstreamTimeout(f"X-FareGate-Timeout passed before provider '{provider.name}' answered")


def stop_reason(body: dict[str, object]) -> str | None:
    """Why a full response ended: Anthropic's `stop_reason`, or OpenAI's first choice's `finish_reason`."""
    reason = body.get("stop_reason")
    if reason is None:
        choices = body.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            reason = choices[0].get("finish_reason")
    return reason if isinstance(reason, str) else None


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
