"""Provider prompt caching done right: stable prefixes, automatic breakpoints, cache-breaker detection.

The `prefix` pipeline stage (`faregate.pipeline.prefix`) puts these pieces together on every request;
`faregate lint` runs the same detector offline. Modules, in reading order:

``minimums``     the dated per-model table of minimum cacheable prefix lengths (Anthropic).
``breakpoints``  where to put Anthropic `cache_control` breakpoints, and with which TTL.
``fingerprint``  hashes of a request's tools, system prompt and history; the OpenAI `prompt_cache_key`.
``tracker``      per-feature prefix churn, intervals between requests sharing a prefix, findings.
``findings``     volatile spans in a request's prefix, with their location.
``repair``       opt-in: move volatile spans after the cached prefix, sort tools and JSON keys.
``lint``         package for `faregate lint FILE`: sniff the input (prompt, request body or log), find
                 cache breakers, cost each per month, render a table or JSON.
"""
