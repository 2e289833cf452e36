"""Outbound adapters, one module a provider, all of the same shape (`Provider`)."""

from __future__ import annotations

from faregate.config import Config
from faregate.providers.anthropic import AnthropicProvider
from faregate.providers.base import Provider, StreamTap
from faregate.providers.openai import OpenAIProvider

__all__ = ["AnthropicProvider", "OpenAIProvider", "Provider", "StreamTap", "build_providers"]


def build_providers(config: Config) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    for name, settings in config.providers.items():
        cls = AnthropicProvider if settings.type == "anthropic" else OpenAIProvider
        providers[name] = cls(name, settings, config.server.upstream_timeout_s)
    return providers
