"""Output caps: a feature's `max_output_tokens` bounds what a response may generate.

The cap applies only when the client asked for more or set no limit: a client's lower limit is its
own decision. When the cap was the binding limit, settle records `output_cap` and whether the
response stopped there (`finish_reason: length`, `stop_reason: max_tokens`), so a cap that cuts
real answers shows up per feature instead of silently truncating them.
"""

from __future__ import annotations

from typing import Any

from faregate.call import Call, Result
from faregate.config import FeatureSettings
from faregate.pipeline.base import Next
from faregate.providers import Provider

# OpenAI's current name for the limit; `max_tokens` is deprecated there (and refused by reasoning
# models) but is what OpenAI-compatible servers (vLLM, llama.cpp, Ollama) have always read.
_OPENAI_LIMIT = "max_completion_tokens"
_OPENAI_LIMITS = ("max_completion_tokens", "max_tokens")


class OutputCap:
    def __init__(self, features: dict[str, FeatureSettings], providers: dict[str, Provider]) -> None:
        self.caps = {
            name: feature.max_output_tokens
            for name, feature in features.items()
            if feature.max_output_tokens is not None
        }
        self.providers = providers

    async def __call__(self, call: Call, next: Next) -> Result:
        cap = self.caps.get(call.attribution.feature)
        if cap is not None:
            compatible = call.route is not None and self.providers[call.route.provider].settings.type == (
                "openai-compatible"
            )
            if apply_cap(call.protocol, call.body, cap, legacy_name=compatible):
                call.output_cap = cap
        return await next(call)


def apply_cap(protocol: str, body: dict[str, Any], cap: int, *, legacy_name: bool = False) -> bool:
    """Lower or set the body's output limit to `cap`; True when the cap became the limit.

    OpenAI: every limit the client set that exceeds the cap is lowered (a body may carry both
    names); with none, `max_completion_tokens` is added (`max_tokens` for OpenAI-compatible
    servers). Anthropic: `max_tokens` is required, so it is lowered when above the cap.
    """
    if protocol == "anthropic":
        limit = body.get("max_tokens")
        if isinstance(limit, int) and limit <= cap:
            return False
        body["max_tokens"] = cap
        return True
    limits = [body[name] for name in _OPENAI_LIMITS if _is_int(body.get(name))]
    if limits and min(limits) <= cap:
        return False
    present = [name for name in _OPENAI_LIMITS if name in body and body[name] is not None]
    for name in present or ["max_tokens" if legacy_name else _OPENAI_LIMIT]:
        body[name] = cap
    return True


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
