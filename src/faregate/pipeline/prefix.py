"""The prefix stage: shape requests so provider prompt caches hit, and find what breaks them.

For every request it fingerprints the client's prefix (tools, system prompt, conversation), records
its hash (prefix churn is counted from the ledger) and, within a per-feature budget, the volatile
spans in it. Then, unless the feature opted out (`features.<name>.prompt_cache.enabled: false`):

- opt-in repair (`relocate_volatile: true`): volatile spans move after the cached prefix, tools and
  JSON keys are sorted;
- Anthropic: `cache_control` breakpoints at the end of the tools, the system prompt and the last
  stable turn, with a TTL chosen from the observed interval between requests sharing each prefix;
- OpenAI: a `prompt_cache_key` from feature, template and prefix, when the client sent none (only
  for OpenAI itself: an OpenAI-compatible server may refuse an unknown parameter).

What was changed is returned in the `X-FareGate-Prompt-Cache` header and recorded in the ledger.
The body is replaced, never edited in place: the anatomy stage may still be measuring the original.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from faregate.call import Call, PrefixShaping, Result
from faregate.config import FeatureSettings, PromptCacheSettings
from faregate.pipeline.base import Next
from faregate.prompt_cache.breakpoints import Position, Ttl, place_breakpoints
from faregate.prompt_cache.findings import block_findings, prefix_blocks, system_text, tool_names
from faregate.prompt_cache.fingerprint import Fingerprint, fingerprint, prompt_cache_key
from faregate.prompt_cache.repair import repair_prefix
from faregate.prompt_cache.tracker import Observation, PrefixTracker, ttl_for_interval
from faregate.providers import Provider
from faregate.volatile import find_volatile_spans

log = logging.getLogger("faregate.prefix")
HEADER = "x-faregate-prompt-cache"
_DEFAULT = PromptCacheSettings()
MAX_FINDINGS = 8  # per request in the ledger; the first spans are the ones that break the most
EXTENDED_CACHE_TTL_BETA = "extended-cache-ttl-2025-04-11"
MAX_MEMO = 4096  # tool lists whose findings are remembered; cleared when full


class PrefixStage:
    def __init__(
        self,
        features: dict[str, FeatureSettings],
        providers: dict[str, Provider],
        tracker: PrefixTracker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = {name: feature.prompt_cache for name, feature in features.items()}
        self.openai_upstreams = {name for name, p in providers.items() if p.settings.type == "openai"}
        self.tracker = tracker or PrefixTracker()
        self.clock = clock
        self._tools_memo: dict[int, list[str]] = {}

    async def __call__(self, call: Call, next: Next) -> Result:
        try:
            actions = self._shape(call)
        except Exception:  # shaping is an optimisation: it must never fail the request
            log.exception("prefix shaping failed", extra={"request_id": call.request_id})
            actions = None
        result = await next(call)
        if actions:
            result.headers[HEADER] = actions
        return result

    def _shape(self, call: Call) -> str | None:
        settings = self.settings.get(call.attribution.feature, _DEFAULT)
        print_ = fingerprint(call.protocol, call.body)
        names = tool_names(call.protocol, call.body)
        seen = self.tracker.observe(call.attribution.feature, print_, names, self.clock())
        shaping = call.prefix = PrefixShaping(prefix_hash=print_.prefix_hash)
        shaping.findings = self._findings(call, print_, seen)
        if not settings.enabled:
            return None
        actions: list[str] = []
        if settings.relocate_volatile:
            repair = repair_prefix(call.protocol, call.body)
            if repair.changed:
                call.body = repair.body
                actions.append(repair.describe())
                shaping.enabled_caching = True
        if call.protocol == "anthropic":
            actions.extend(self._breakpoints(call, settings, seen))
        elif call.route is not None and call.route.provider in self.openai_upstreams:
            actions.extend(self._cache_key(call, print_))
        shaping.actions = "; ".join(actions) or None
        return shaping.actions

    def _breakpoints(self, call: Call, settings: PromptCacheSettings, seen: Observation) -> list[str]:
        model = call.route.model if call.route else call.model_requested

        def ttl_for(position: Position) -> Ttl:
            if settings.ttl != "auto":
                return settings.ttl
            return ttl_for_interval(seen.intervals.get(position))

        placement = place_breakpoints(call.body, model, ttl_for)
        if not placement.added:
            return []
        call.body = placement.body
        assert call.prefix is not None
        call.prefix.enabled_caching = True
        if "1h" in placement.ttls:  # without it the API refuses (or silently shortens) a 1-hour TTL
            call.betas.append(EXTENDED_CACHE_TTL_BETA)
        return [f"breakpoints={','.join(placement.added)}", f"ttl={','.join(placement.ttls)}"]

    def _cache_key(self, call: Call, print_: Fingerprint) -> list[str]:
        if "prompt_cache_key" in call.body or print_.empty_prefix:
            return []
        attribution = call.attribution
        call.body = {
            **call.body,
            "prompt_cache_key": prompt_cache_key(attribution.feature, attribution.template, print_),
        }
        return ["key"]

    def _findings(self, call: Call, print_: Fingerprint, seen: Observation) -> str | None:
        """Volatile spans as "kind@location;..." for the ledger: kinds and places, never prompt text.

        Tool definitions rarely change when a system prompt does, and walking their schemas is half
        the scan, so their findings are remembered by the tools' hash.
        """
        found: list[str] = []
        if seen.scan:
            system = [
                f"{span.kind}@{label}:{span.start}-{span.end}"
                for label, text in system_text(call.protocol, call.body)
                for span in find_volatile_spans(text)
            ]
            tools = self._tool_findings(call, print_.tools) if print_.tools else []
            found = tools + system if call.protocol == "anthropic" else system + tools  # cache order
        if seen.tool_order_changed:
            found.append("tool_order@tools")
        return ";".join(found[:MAX_FINDINGS]) or None

    def _tool_findings(self, call: Call, tools_hash: int) -> list[str]:
        hit = self._tools_memo.get(tools_hash)
        if hit is None:
            if len(self._tools_memo) >= MAX_MEMO:
                self._tools_memo.clear()
            blocks = [b for b in prefix_blocks(call.protocol, call.body) if b.section == "tools"]
            hit = self._tools_memo[tools_hash] = [
                f"{f.kind}@{f.location}" for block in blocks for f in block_findings(block)
            ]
        return hit
