"""The SDK methods recorded: OpenAI `chat.completions.create/parse`, Anthropic `messages.create/stream`.

Each wrapper calls the SDK's own method with the application's arguments (plus, for an OpenAI stream,
`stream_options.include_usage`, as the gateway asks) and returns the SDK's own result, or a stream that
behaves the same; the SDK's exception is re-raised unchanged after the failure is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from faregate.sdk.calls import Recording, Tracker
from faregate.sdk.streams import (
    AsyncTrackedMessageStreamManager,
    AsyncTrackedStream,
    TrackedMessageStreamManager,
    TrackedStream,
    stream_tap,
)

log = logging.getLogger("faregate.sdk")


class Proxy:
    """Every attribute not defined by a subclass is the wrapped object's own."""

    __slots__ = ("_faregate_target", "_faregate_tracker")

    def __init__(self, target: Any, tracker: Tracker) -> None:
        self._faregate_target = target
        self._faregate_tracker = tracker

    def __getattr__(self, name: str) -> Any:
        if name in Proxy.__slots__:  # not set yet: do not recurse
            raise AttributeError(name)
        return getattr(self._faregate_target, name)

    def __repr__(self) -> str:
        return f"<faregate-tracked {self._faregate_target!r}>"


class OpenAIChat(Proxy):
    __slots__ = ()

    @property
    def completions(self) -> OpenAICompletions:
        return OpenAICompletions(self._faregate_target.completions, self._faregate_tracker)


class OpenAICompletions(Proxy):
    __slots__ = ()

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return _call(self._faregate_target.create, self._faregate_tracker, args, kwargs)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        """Structured outputs: a complete `ChatCompletion`, usage included."""
        return _call(self._faregate_target.parse, self._faregate_tracker, args, kwargs)


class AnthropicMessages(Proxy):
    __slots__ = ()

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return _call(self._faregate_target.create, self._faregate_tracker, args, kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        tracker = self._faregate_tracker
        recording = _begin(tracker, kwargs, stream=True)
        try:
            manager = self._faregate_target.stream(*args, **kwargs)
        except BaseException as exc:
            if recording is not None:
                recording.fail(exc)
            raise
        if recording is None:
            return manager
        if tracker.is_async:
            return AsyncTrackedMessageStreamManager(manager, recording)
        return TrackedMessageStreamManager(manager, recording)


def _call(method: Callable[..., Any], tracker: Tracker, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    stream = kwargs.get("stream") is True
    recording = _begin(tracker, kwargs, stream)
    if recording is None:
        return method(*args, **kwargs)
    show_usage = True
    if stream and tracker.protocol == "openai":
        kwargs, show_usage = with_stream_usage(kwargs)
    if tracker.is_async:
        return _call_async(method, recording, args, kwargs, show_usage)
    try:
        response = method(*args, **kwargs)
    except BaseException as exc:
        recording.fail(exc)
        raise
    if stream:
        return TrackedStream(response, recording, stream_tap(tracker.protocol, show_usage))
    recording.succeed(response)
    return response


async def _call_async(
    method: Callable[..., Any],
    recording: Recording,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    show_usage: bool,
) -> Any:
    try:
        response = await method(*args, **kwargs)
    except BaseException as exc:
        recording.fail(exc)
        raise
    if recording.seen.stream:
        return AsyncTrackedStream(response, recording, stream_tap(recording.seen.protocol, show_usage))
    recording.succeed(response)
    return response


def _begin(tracker: Tracker, kwargs: Mapping[str, Any], stream: bool) -> Recording | None:
    try:
        return tracker.begin(kwargs, stream)
    except Exception:  # recording must never stop the call
        log.exception("cannot record a call for the FareGate ledger")
        return None


def with_stream_usage(kwargs: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The arguments with `stream_options.include_usage` set, and whether the caller asked for it: a stream
    without usage cannot be priced exactly, and a caller that did not ask must not see the usage chunk."""
    options = kwargs.get("stream_options")
    if isinstance(options, Mapping) and options.get("include_usage") is True:
        return kwargs, True
    extra = dict(options) if isinstance(options, Mapping) else {}
    return {**kwargs, "stream_options": {**extra, "include_usage": True}}, False
