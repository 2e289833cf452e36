"""What the SDK records into: the ledger store, the prices, the features' context patterns, the providers.

Built from the same `Config` the gateway reads, so an event recorded here is priced and dissected as
the gateway would price and dissect the same call.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from faregate.anatomy import compile_patterns
from faregate.config import Config, load_config
from faregate.ledger import LedgerStore, open_store
from faregate.pricing import PriceBook, overrides_from_config

Patterns = tuple[re.Pattern[str], ...]


@dataclass(frozen=True, slots=True)
class Settings:
    store: LedgerStore | None  # None: the configured store could not be opened; events go to a file
    prices: PriceBook
    patterns: Mapping[str, Patterns]  # feature -> its context patterns (anatomy)
    by_url: Mapping[str, str]  # a configured provider's base URL (no trailing slash) -> its name
    pricing: Mapping[str, str | None]  # a configured provider's name -> its genai-prices id


def load_settings(
    database: str | os.PathLike[str] | None = None, config: Config | str | os.PathLike[str] | None = None
) -> Settings:
    """The config named (a `Config` or a YAML path; default `$FAREGATE_CONFIG`, else the environment
    alone), with `database` winning over the config's. Opens (and migrates) the store: raises on a bad
    config or an unreachable database, so call it where a failure can be reported.
    """
    if not isinstance(config, Config):
        path = config if config is not None else os.environ.get("FAREGATE_CONFIG") or None
        config = load_config(None if path is None else Path(path))
    url = os.fspath(database) if database is not None else config.database
    pricing = {
        name: provider.type if provider.type in ("openai", "anthropic") else None
        for name, provider in config.providers.items()
    }
    return Settings(
        store=open_store(url),
        prices=PriceBook(overrides_from_config(config.prices)),
        patterns={
            name: compile_patterns(feature.context_patterns)
            for name, feature in config.features.items()
            if feature.context_patterns
        },
        by_url={provider.url.rstrip("/"): name for name, provider in config.providers.items()},
        pricing=pricing,
    )


def offline_settings() -> Settings:
    """Stand-in settings while the configured ledger cannot be opened: priced by genai-prices alone."""
    return Settings(store=None, prices=PriceBook(), patterns={}, by_url={}, pricing={})


def resolve_provider(
    settings: Settings, base_url: str | None, explicit: str | None
) -> tuple[str | None, str | None]:
    """(provider name, genai-prices id) of a call.

    An explicit name wins; then a configured provider with the client's base URL (the gateway's name for
    it); then the provider genai-prices knows at that URL (api.openai.com is "openai"); else the host.
    An unknown host prices by model name alone, as an OpenAI-compatible upstream does in the gateway.
    """
    if explicit is not None:
        return explicit, settings.pricing.get(explicit, explicit)  # PriceBook ignores unknown ids
    if not base_url:
        return None, None
    url = base_url.rstrip("/")
    name = settings.by_url.get(url)
    if name is not None:
        return name, settings.pricing.get(name)
    known = _known_provider(url)
    if known is not None:
        return known, known
    return urlsplit(url).hostname or url, None


@functools.lru_cache(maxsize=64)
def _known_provider(url: str) -> str | None:
    from genai_prices import data_snapshot

    for provider in data_snapshot.get_snapshot().providers:
        if re.match(provider.api_pattern, url):
            return provider.id
    return None
