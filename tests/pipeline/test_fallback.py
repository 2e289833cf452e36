"""The fallback chains built from `models.<alias>.fallbacks`."""

from __future__ import annotations

from faregate.call import Route
from faregate.config import Config
from faregate.pipeline.fallback import describe, fallback_chains


def chains(models: dict[str, object]) -> dict[tuple[str, str], tuple[Route, ...]]:
    config = Config.model_validate(
        {
            "providers": {
                "a": {"type": "openai"},
                "b": {"type": "openai-compatible", "base_url": "http://b"},
            },
            "models": models,
        }
    )
    return fallback_chains(config.models)


def test_chain_by_upstream_route_in_order() -> None:
    built = chains(
        {
            "fast": {"provider": "a", "model": "m1", "fallbacks": ["spare", "last"]},
            "spare": {"provider": "b", "model": "m1"},
            "last": {"provider": "b", "model": "m2", "fallbacks": ["fast"]},
        }
    )
    assert built[("a", "m1")] == (Route("b", "m1"), Route("b", "m2"))
    assert built[("b", "m2")] == (Route("a", "m1"),)  # not followed transitively from fast
    assert ("b", "m1") not in built


def test_aliases_of_one_upstream_merge_without_duplicates_or_self() -> None:
    built = chains(
        {
            "x": {"provider": "a", "model": "m", "fallbacks": ["y"]},
            "x2": {"provider": "a", "model": "m", "fallbacks": ["y2", "z", "x"]},
            "y": {"provider": "b", "model": "m"},
            "y2": {"provider": "b", "model": "m"},
            "z": {"provider": "b", "model": "n"},
        }
    )
    assert built == {("a", "m"): (Route("b", "m"), Route("b", "n"))}


def test_describe() -> None:
    assert describe(Route("openai", "gpt-4o-mini"), "503") == "openai/gpt-4o-mini:503"
