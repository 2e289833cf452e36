"""The last stage: send the call to its provider over a shared aiohttp pool and relay the answer.

Non-streaming bodies go back byte-for-byte; streams are relayed event by event through the
provider's `StreamTap`, which reads usage on the way. Upstream errors are passed through with their
own status and body; a provider that cannot be reached or does not answer in time becomes 502 / 504.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping

import aiohttp
import orjson

from faregate.call import Call, Result
from faregate.errors import UpstreamTimeout, UpstreamUnavailable
from faregate.pipeline.base import Next
from faregate.protocols import BY_NAME
from faregate.providers import Provider
from faregate.providers.base import PASS_THROUGH_HEADERS, PASS_THROUGH_PREFIXES


def pass_through_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in upstream.items():
        lower = name.lower()
        if lower in PASS_THROUGH_HEADERS or lower.startswith(PASS_THROUGH_PREFIXES):
            headers[lower] = value
    return headers


class Upstream:
    def __init__(self, providers: dict[str, Provider], connect_timeout_s: float) -> None:
        self.providers = providers
        self.session: aiohttp.ClientSession | None = None
        self._timeouts = {
            name: aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=p.timeout_s)
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

    async def __call__(self, call: Call, next: Next) -> Result:
        assert call.route is not None and self.session is not None
        provider = self.providers[call.route.provider]
        body = orjson.dumps(provider.prepare_body(call))
        started = time.perf_counter()
        try:
            response = await self.session.post(
                provider.endpoint(),
                data=body,
                headers=provider.request_headers(call),
                timeout=self._timeouts[provider.name],
            )
        except TimeoutError:
            raise UpstreamTimeout(f"provider '{provider.name}' did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"provider '{provider.name}' is unreachable: {_reason(exc)}") from None
        if call.stream and response.status < 400:
            return self._relay_stream(call, provider, response, started)
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
        self, call: Call, provider: Provider, response: aiohttp.ClientResponse, started: float
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
                for callback in result.on_complete:
                    callback(result)
            if failure is not None:  # the client already has a 200: tell it in-band
                yield protocol.render_stream_error(failure)

        result.stream = relay()
        return result


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
