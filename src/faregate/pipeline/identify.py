"""Who a call is for: attribution from `X-FareGate-*` headers and the body's `metadata` object.

Identification runs as soon as the body parses, before validation and before the pipeline, so a
request FareGate refuses is still attributed to the feature and team that sent it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from faregate.call import ATTRIBUTION_DIMENSIONS, UNATTRIBUTED, Attribution, Call
from faregate.errors import InvalidRequest

HEADER_PREFIX = "x-faregate-"
_HEADER_DIMENSIONS = {HEADER_PREFIX + d: d for d in ATTRIBUTION_DIMENSIONS}
# Keys FareGate reads from (and removes from) the body's metadata object.
_METADATA_KEYS = {d: d for d in ATTRIBUTION_DIMENSIONS} | {f"faregate_{d}": d for d in ATTRIBUTION_DIMENSIONS}
MAX_VALUE_LENGTH = 256
# Control characters (C0, DEL, C1) and Unicode line/paragraph separators: an attribution value is a
# label stored in the ledger, shown by the dashboard and put in metrics labels, so "a\r\nSet-Cookie: x"
# must arrive there as inert text ("aSet-Cookie: x"), and PostgreSQL refuses NUL in text anyway.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean_value(value: str) -> str:
    """An attribution value made inert: control characters removed, trimmed, at most 256 characters."""
    return _CONTROL.sub("", value).strip()[:MAX_VALUE_LENGTH]


def attribution_from_headers(headers: Mapping[str, str]) -> Attribution:
    """Headers are read before the body is parsed, so even a malformed request is attributed."""
    attribution = Attribution()
    for name, value in headers.items():
        dimension = _HEADER_DIMENSIONS.get(name.lower())
        if dimension is not None and (cleaned := clean_value(value)):
            setattr(attribution, dimension, cleaned)
    return attribution


def apply_metadata(call: Call) -> None:
    """Fill dimensions the headers left open from `metadata`, and strip FareGate's keys from it.

    The provider never sees FareGate's keys: OpenAI would store them, Anthropic rejects unknown ones.
    """
    metadata = call.body.get("metadata")
    if metadata is None:
        _user_fallback(call)
        return
    if not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object")
    found = [key for key in metadata if key in _METADATA_KEYS]
    for key in found:
        value = metadata.pop(key)
        dimension = _METADATA_KEYS[key]
        if getattr(call.attribution, dimension) == UNATTRIBUTED and _usable(value):
            # A body can carry what a header cannot (NUL, CR/LF): cleaned the same way.
            setattr(call.attribution, dimension, clean_value(str(value)))
    if found and not metadata:
        del call.body["metadata"]
    _user_fallback(call)


def _usable(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and clean_value(str(value)) != ""


def _user_fallback(call: Call) -> None:
    """The provider-native end-user id (OpenAI `user`, Anthropic `metadata.user_id`) names the user."""
    if call.attribution.user != UNATTRIBUTED:
        return
    metadata = call.body.get("metadata")
    native = call.body.get("user") if call.protocol == "openai" else None
    if native is None and isinstance(metadata, dict):
        native = metadata.get("user_id")
    if isinstance(native, str) and (cleaned := clean_value(native)):
        call.attribution.user = cleaned


def tenant_of(call: Call) -> str:
    """Whose cache entries and conversations a call may see: `call.tenant` once authentication set
    it (the virtual key's team), else the client's credential (hashed) and team."""
    if call.tenant:
        return call.tenant
    headers = call.headers
    credential = headers.get("authorization") or headers.get("x-api-key") or ""
    data = f"{credential}\x00{call.attribution.team}".encode("utf-8", "surrogatepass")
    call.tenant = hashlib.blake2b(data, digest_size=16).hexdigest()
    return call.tenant
