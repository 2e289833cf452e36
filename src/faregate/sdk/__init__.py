"""Record cost events from applications that call providers directly, not through the gateway.

    import faregate, openai

    client = faregate.track(openai.OpenAI(), feature="search", team="growth")
    client.chat.completions.create(model="gpt-4o-mini", messages=[...])  # one event in the ledger

See docs/sdk.md.
"""

from faregate.sdk.manual import log_cost_event
from faregate.sdk.process import configure, flush, shutdown
from faregate.sdk.tracking import track

__all__ = ["configure", "flush", "log_cost_event", "shutdown", "track"]
