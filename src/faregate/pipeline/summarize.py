"""The summary call of the `summary` history policy: a request of FareGate's own, on the ledger.

The summary is produced by the feature's summary model (default: the `small` routing tier) through
the same upstream stage as client requests, and settled like one: the call is a ledger event
attributed to the feature whose conversation it compacts (`history_policy = "summarize"`), so the
policy's cost is counted against its savings.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from faregate.call import Call, HistoryOutcome, Result, Route
from faregate.errors import FareGateError
from faregate.history.compose import summary_prompt
from faregate.pipeline.base import Next
from faregate.pipeline.route import ModelCatalogue
from faregate.pipeline.settle import error_result


class SummaryFailed(Exception):
    """The summary model could not produce a summary; the reason is recorded on the request."""


class Summarizer:
    def __init__(
        self,
        catalogue: ModelCatalogue,
        upstream: Next,
        settle: Callable[[Call, Result], None],
        new_request_id: Callable[[], str],
    ) -> None:
        self.catalogue = catalogue
        self.upstream = upstream
        self.settle = settle
        self.new_request_id = new_request_id

    async def __call__(
        self,
        parent: Call,
        model: str,
        previous: str | None,
        texts: Sequence[str],
        *,
        max_tokens: int,
        timeout_s: float,
    ) -> str:
        """The summary of `texts` (extending `previous`); raises SummaryFailed, settled either way."""
        try:
            route, protocol = self._route(model, parent)
        except FareGateError as exc:
            raise SummaryFailed(f"summary model {model!r}: {exc.message}") from None
        body = _body(protocol, route.model, summary_prompt(texts, previous), max_tokens)
        call = Call(
            request_id=self.new_request_id(),
            protocol=protocol,
            body=body,
            raw_body=orjson.dumps(body),
            model_requested=model,
            stream=False,
            headers=parent.headers,  # the client's credentials, for providers without a configured key
            attribution=dataclasses.replace(parent.attribution),
            route=route,
            history=HistoryOutcome("summarize"),
        )
        try:
            result = await asyncio.wait_for(self.upstream(call), timeout_s)
        except TimeoutError:
            self._settle_failure(call, FareGateError(f"no summary within {timeout_s:g} s"))
            raise SummaryFailed(f"summary model {model!r} timed out after {timeout_s:g} s") from None
        except FareGateError as exc:
            self._settle_failure(call, exc)
            raise SummaryFailed(f"summary model {model!r}: {exc.message}") from None
        self.settle(call, result)
        text = "".join(result.output_text).strip()
        if result.status >= 400:
            raise SummaryFailed(f"summary model {model!r} answered HTTP {result.status}")
        if not text:
            raise SummaryFailed(f"summary model {model!r} returned no text")
        return text

    def _route(self, model: str, parent: Call) -> tuple[Route, Any]:
        """A configured alias goes to its provider; any other name to the client protocol's provider."""
        alias = self.catalogue.aliases.get(model)
        if alias is not None:
            return alias, self.catalogue.providers[alias.provider].protocol
        return self.catalogue.resolve(parent.protocol, model), parent.protocol

    def _settle_failure(self, call: Call, error: FareGateError) -> None:
        result = error_result(call, error)
        self.settle(call, result)


def _body(protocol: str, model: str, messages: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
    """The summary request in the summary model's wire format (temperature 0: stable summaries)."""
    if protocol == "anthropic":
        system = "\n\n".join(str(m["content"]) for m in messages if m.get("role") == "system")
        turns = [m for m in messages if m.get("role") != "system"]
        body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": turns, "temperature": 0}
        if system:
            body["system"] = system
        return body
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
