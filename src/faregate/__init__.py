"""FareGate: an LLM cost-optimization gateway."""

from __future__ import annotations

__version__ = "0.1.0"

# The SDK (`faregate.track`, `faregate.log_cost_event`, `faregate.configure`) is imported on first use:
# `import faregate` must stay cheap for the CLI and the gateway, which never need it (not even `typing`).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from faregate.sdk import configure, log_cost_event, track

__all__ = ["__version__", "configure", "log_cost_event", "track"]
_SDK = frozenset({"track", "log_cost_event", "configure"})


def __getattr__(name: str) -> object:
    if name in _SDK:
        from faregate import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'faregate' has no attribute {name!r}")
