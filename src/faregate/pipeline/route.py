"""Where a call goes: the configured model catalogue, then the provider for the client's protocol."""

from __future__ import annotations

from faregate.call import Call, Protocol, Result, Route
from faregate.config import Config
from faregate.errors import ModelNotFound
from faregate.pipeline.base import Next
from faregate.providers import Provider

_PROTOCOL_NAMES = {"openai": "OpenAI Chat Completions", "anthropic": "Anthropic Messages"}
_PROTOCOL_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


class ModelCatalogue:
    """Public model names from `models:`; any other name goes to the client protocol's provider."""

    def __init__(self, config: Config, providers: dict[str, Provider]) -> None:
        self.providers = providers
        self.aliases = {name: Route(m.provider, m.model) for name, m in config.models.items()}
        self.default_for: dict[Protocol, str] = {}
        # A provider of the protocol's own type wins over an OpenAI-compatible one.
        for name, provider in sorted(providers.items(), key=lambda kv: kv[1].settings.type != kv[1].protocol):
            self.default_for.setdefault(provider.protocol, name)

    def resolve(self, protocol: Protocol, model: str) -> Route:
        route = self.aliases.get(model)
        if route is None:
            provider_name = self.default_for.get(protocol)
            if provider_name is None:
                raise ModelNotFound(
                    f"The model '{model}' does not exist or you do not have access to it: it is not in "
                    f"FareGate's models and no {_PROTOCOL_NAMES[protocol]} provider is configured."
                )
            return Route(provider_name, model)
        provider = self.providers[route.provider]
        if provider.protocol != protocol:
            raise ModelNotFound(
                f"The model '{model}' is served by provider '{route.provider}', which speaks "
                f"{_PROTOCOL_NAMES[provider.protocol]}: send it to {_PROTOCOL_PATHS[provider.protocol]}."
            )
        return route


class Resolve:
    """The route of the model the client named; `auto` starts at the frontier tier's model.

    The router stage, later in the pipeline, may move the call to a cheaper tier.
    """

    def __init__(self, catalogue: ModelCatalogue, auto: str | None = None) -> None:
        self.catalogue = catalogue
        self.auto = auto

    async def __call__(self, call: Call, next: Next) -> Result:
        model = call.model_requested
        if model == "auto" and self.auto is not None:
            model = self.auto
        call.route = self.catalogue.resolve(call.protocol, model)
        return await next(call)
