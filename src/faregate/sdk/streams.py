"""Streams handed back to the application unchanged in use, recorded when they end.

Each item is shown to the gateway's own stream tap (`faregate.providers`), so usage, the model and the
generated text are read exactly as the gateway reads them, and the OpenAI usage chunk FareGate asked
for is hidden when the application did not ask for it. A stream is recorded when it is exhausted,
fails, is closed early or is dropped unclosed (an early stop is `client_disconnected`, as at the gateway).
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import orjson

from faregate.call import Protocol
from faregate.providers.anthropic import AnthropicStreamTap, usage_from_anthropic
from faregate.providers.base import StreamTap
from faregate.providers.openai import OpenAIStreamTap
from faregate.sdk.calls import Recording, classify, output_text, plain

log = logging.getLogger("faregate.sdk")
_ANTHROPIC_READ = frozenset({"message_start", "message_delta", "content_block_delta"})
_OWN = frozenset({"_stream", "_recording", "_tap", "_ended"})


def stream_tap(protocol: Protocol, show_usage_chunk: bool) -> StreamTap:
    return OpenAIStreamTap(show_usage_chunk) if protocol == "openai" else AnthropicStreamTap()


class _Watched:
    """What the sync and async streams share: reading items, recording once, delegating the rest."""

    def __init__(self, stream: Any, recording: Recording, tap: StreamTap) -> None:
        self._stream = stream
        self._recording = recording
        self._tap = tap
        self._ended = False

    def __getattr__(self, name: str) -> Any:
        if name in _OWN:  # not set yet (a failed __init__): do not recurse through _stream
            raise AttributeError(name)
        return getattr(self._stream, name)

    def _shows(self, item: Any) -> bool:
        """Feed one item to the tap as the SSE event it came from; False hides it from the caller."""
        try:
            if isinstance(self._tap, AnthropicStreamTap):
                kind = getattr(item, "type", None)
                if kind not in _ANTHROPIC_READ:
                    return True
                return self._tap.keep(f"event: {kind}\ndata: ".encode() + orjson.dumps(plain(item)))
            return self._tap.keep(b"data: " + orjson.dumps(plain(item)))
        except Exception:
            log.exception("cannot read a stream item for the FareGate ledger")
            return True

    def _end(self, exc: BaseException | None = None) -> None:
        """Exhausted (`_ended`), failed (`exc`) or stopped early: record what the stream told so far."""
        try:
            tap = self._tap
            seen: dict[str, Any] = {"usage": tap.usage, "model": tap.model, "text": "".join(tap.text)}
            if exc is not None:
                self._recording.fail(exc, streaming=True, **seen)
            elif self._ended:
                self._recording.finish(**seen)
            else:
                self._recording.finish(error_kind="client_disconnected", **seen)
        except Exception:
            log.exception("cannot record a stream")

    def __del__(self) -> None:
        recording = getattr(self, "_recording", None)
        if recording is not None and not recording.done:
            self._end()  # dropped without being read to the end or closed


class TrackedStream(_Watched):
    """`openai.Stream` / `anthropic.Stream`, recorded."""

    def __iter__(self) -> TrackedStream:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                item = next(self._stream)
            except StopIteration:
                self._ended = True
                self._end()
                raise
            except BaseException as exc:
                self._end(exc)
                raise
            if self._shows(item):
                return item

    def __enter__(self) -> TrackedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._end()


class AsyncTrackedStream(_Watched):
    """`openai.AsyncStream` / `anthropic.AsyncStream`, recorded."""

    def __aiter__(self) -> AsyncTrackedStream:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                item = await self._stream.__anext__()
            except StopAsyncIteration:
                self._ended = True
                self._end()
                raise
            except BaseException as exc:
                self._end(exc)
                raise
            if self._shows(item):
                return item

    async def __aenter__(self) -> AsyncTrackedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self._stream.close()
        finally:
            self._end()

    async def aclose(self) -> None:
        await self.close()


def record_message_stream(recording: Recording, stream: Any, exc: BaseException | None) -> None:
    """Anthropic's `messages.stream()` helper: its `MessageStream` accumulates the message (usage
    included) however the application reads it (events, `text_stream`, `get_final_message()`), so the
    snapshot at the end of the `with` block is what the call used."""
    try:
        try:
            snapshot = stream.current_message_snapshot if stream is not None else None
        except Exception:  # nothing arrived yet
            snapshot = None
        usage = usage_from_anthropic(plain(getattr(snapshot, "usage", None)))
        model = getattr(snapshot, "model", None)
        seen: dict[str, Any] = {
            "usage": usage,
            "model": model if isinstance(model, str) else None,
            "text": "" if usage is not None else output_text("anthropic", plain(snapshot)),
        }
        complete = getattr(snapshot, "stop_reason", None) is not None
        if exc is not None and not (complete and classify(exc, True)[1] == "client_disconnected"):
            recording.fail(exc, streaming=True, **seen)
        elif complete:
            recording.finish(**seen)
        else:
            recording.finish(error_kind="client_disconnected", **seen)
    except Exception:
        log.exception("cannot record a message stream")


class TrackedMessageStreamManager:
    """`client.messages.stream(...)`: the request is made on entering the `with` block."""

    def __init__(self, manager: Any, recording: Recording) -> None:
        self._manager = manager
        self._recording = recording
        self._stream: Any = None

    def __enter__(self) -> Any:
        try:
            self._stream = self._manager.__enter__()
        except BaseException as exc:
            self._recording.fail(exc)
            raise
        return self._stream

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._manager.__exit__(exc_type, exc, tb)
        finally:
            record_message_stream(self._recording, self._stream, exc)


class AsyncTrackedMessageStreamManager:
    """`async with client.messages.stream(...)`."""

    def __init__(self, manager: Any, recording: Recording) -> None:
        self._manager = manager
        self._recording = recording
        self._stream: Any = None

    async def __aenter__(self) -> Any:
        try:
            self._stream = await self._manager.__aenter__()
        except BaseException as exc:
            self._recording.fail(exc)
            raise
        return self._stream

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._manager.__aexit__(exc_type, exc, tb)
        finally:
            record_message_stream(self._recording, self._stream, exc)
