"""`track(client, ...)`: an OpenAI or Anthropic SDK client whose calls are recorded in the FareGate ledger.

For applications that call providers directly rather than through the gateway: the same cost events,
with the same pricing and anatomy, in the same ledger, so one dashboard shows both. The application's
client is not changed; `track` returns a wrapper that forwards every attribute to it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, cast

from faregate.call import Attribution, Protocol
from faregate.sdk.calls import Tracker
from faregate.sdk.resources import AnthropicMessages, OpenAIChat, Proxy

C = TypeVar("C")


def track(
    client: C,
    *,
    feature: str | None = None,
    team: str | None = None,
    template: str | None = None,
    cohort: str | None = None,
    user: str | None = None,
    conversation: str | None = None,
    task: str | None = None,
    provider: str | None = None,
) -> C:
    """Wrap an `openai.OpenAI`/`AsyncOpenAI` or `anthropic.Anthropic`/`AsyncAnthropic` client (Azure and
    Bedrock variants too) so that every `chat.completions.create`/`parse` or `messages.create`/`stream`
    call records one cost event attributed to these dimensions (unnamed ones are `unattributed`).

    `provider` names the provider in the ledger; by default it is the gateway config's name for the
    client's base URL, or the provider genai-prices knows there ("openai", "anthropic", "azure"...), or
    the host. Tracking a tracked client again changes only the dimensions given.
    """
    given = {
        "feature": feature,
        "team": team,
        "template": template,
        "cohort": cohort,
        "user": user,
        "conversation": conversation,
        "task": task,
    }
    if isinstance(client, TrackedClient):
        target, base = client._faregate_target, client._faregate_tracker
        attribution = dataclasses.replace(base.attribution, **{k: v for k, v in given.items() if v})
        tracker = dataclasses.replace(base, attribution=attribution, provider=provider or base.provider)
    else:
        target = client
        protocol, is_async = _kind(client)
        attribution = Attribution(**{k: v for k, v in given.items() if v})
        tracker = Tracker(protocol, is_async, attribution, _base_url(client), provider)
    return cast(C, TrackedClient(target, tracker))


class TrackedClient(Proxy):
    """A tracked client. `isinstance(tracked, openai.OpenAI)` still holds, for code that checks."""

    __slots__ = ()

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self._faregate_target)

    @property
    def chat(self) -> Any:
        chat = self._faregate_target.chat
        if self._faregate_tracker.protocol != "openai":
            return chat
        return OpenAIChat(chat, self._faregate_tracker)

    @property
    def messages(self) -> Any:
        messages = self._faregate_target.messages
        if self._faregate_tracker.protocol != "anthropic":
            return messages
        return AnthropicMessages(messages, self._faregate_tracker)

    def with_options(self, **kwargs: Any) -> Any:
        """A copy with other options (a new base URL, timeout...), still tracked."""
        return self._retrack(self._faregate_target.with_options(**kwargs))

    def copy(self, **kwargs: Any) -> Any:
        return self._retrack(self._faregate_target.copy(**kwargs))

    def _retrack(self, client: Any) -> TrackedClient:
        return TrackedClient(client, dataclasses.replace(self._faregate_tracker, base_url=_base_url(client)))

    # `with` and `async with` are looked up on the type, not through __getattr__.
    def __enter__(self) -> TrackedClient:
        self._faregate_target.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._faregate_target.__exit__(*exc_info)

    async def __aenter__(self) -> TrackedClient:
        await self._faregate_target.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._faregate_target.__aexit__(*exc_info)


def _kind(client: Any) -> tuple[Protocol, bool]:
    """(wire format, async) of an SDK client, from the first SDK class it is an instance of."""
    for cls in type(client).__mro__:
        package = cls.__module__.partition(".")[0]
        if package == "openai" or package == "anthropic":
            return cast(Protocol, package), cls.__name__.startswith("Async")
    raise TypeError(f"faregate.track() wraps an openai or anthropic SDK client, not {type(client).__name__}")


def _base_url(client: Any) -> str | None:
    url = getattr(client, "base_url", None)
    return str(url) if url else None
