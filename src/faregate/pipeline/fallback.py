"""The ordered fallback chain of each upstream route, from `models.<alias>.fallbacks`.

The chain is looked up by where the call is going, `(provider, model)`, not by the name the client
used: after `Resolve` and the router, that is all the upstream stage knows, and it covers a routed
tier's model as well as an alias the client named. Built once at start-up; the request path does
one dict lookup, and a route without fallbacks gets the shared empty tuple.

Only the first route's own list is tried (a fallback's fallbacks are not followed): the chain a
reader sees in the config is the chain that runs. Two aliases of the same upstream model merge
their lists in config order, without duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping

from faregate.call import Route
from faregate.config import ModelSettings

NO_FALLBACKS: tuple[Route, ...] = ()


def fallback_chains(models: Mapping[str, ModelSettings]) -> dict[tuple[str, str], tuple[Route, ...]]:
    """(provider, model) → the routes to try, in order, when that upstream fails or its circuit is open."""
    chains: dict[tuple[str, str], list[Route]] = {}
    for settings in models.values():
        if not settings.fallbacks:
            continue
        key = (settings.provider, settings.model)
        chain = chains.setdefault(key, [])
        for alias in settings.fallbacks:
            other = models[alias]  # the config validated that fallbacks name models
            target = (other.provider, other.model)
            if target != key and all((r.provider, r.model) != target for r in chain):
                chain.append(Route(other.provider, other.model))
    return {key: tuple(chain) for key, chain in chains.items() if chain}


def describe(route: Route, reason: str) -> str:
    """One hop of `Result.fallbacks`: "provider/model:reason"."""
    return f"{route.provider}/{route.model}:{reason}"
