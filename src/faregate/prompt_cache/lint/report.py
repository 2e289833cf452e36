"""What `faregate lint` reports: one `Item` per finding, gathered in a `LintReport`; `LintInputError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

__all__ = ["Item", "Kind", "LintInputError", "LintReport"]

Kind = Literal["text", "body", "log"]


@dataclass(slots=True)
class Item:
    """One reported finding; `monthly_usd` is None when it was not (or could not be) priced."""

    kind: str
    text: str
    location: str
    monthly_usd: Decimal | None = None
    feature: str | None = None  # logs only
    requests: int | None = None  # logs only: requests carrying the span
    cache_misses: int | None = None  # logs only: requests where it changed

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "text": self.text, "location": self.location}
        if self.monthly_usd is not None:
            out["monthly_cost_usd"] = float(self.monthly_usd.quantize(Decimal("0.000001")))
        if self.feature is not None:
            out["feature"] = self.feature
        if self.requests is not None:
            out["requests"] = self.requests
        if self.cache_misses is not None:
            out["cache_misses"] = self.cache_misses
        return out


@dataclass(slots=True)
class LintReport:
    file: str
    input_kind: Kind
    items: list[Item] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # top-level JSON keys besides file and findings
    notes: list[str] = field(default_factory=list)  # caption lines for the table

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, **self.extra, "findings": [item.as_dict() for item in self.items]}


class LintInputError(Exception):
    """The input cannot be linted: missing, unreadable, empty, or a log with no recognisable request."""
