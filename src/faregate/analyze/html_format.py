"""Coercion and formatting for the HTML report (``faregate.analyze.html``).

The report comes from JSON, so every value is coerced leniently (a missing or malformed value is 0 or
empty, never an exception); :func:`_esc` escapes the strings that go onto the page.
"""

from __future__ import annotations

import html
import math
from typing import Any

from faregate.anatomy import COMPONENTS

# ---------------------------------------------------------------------------------------------
# Coercion and formatting (the report comes from JSON: be lenient about what is there)


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> str:
    return f"{round(_num(value)):,}"


def _pct(fraction: Any, digits: int = 1) -> str:
    return f"{_num(fraction) * 100:.{digits}f}%"


def _usd(value: Any, compact: bool = False) -> str:
    number = _num(value)
    sign = "\u2212" if number < 0 else ""
    a = abs(number)
    if compact and a >= 1e6:
        text = f"{a / 1e6:.1f}M"
    elif compact and a >= 1e4:
        text = f"{a / 1e3:.0f}k"
    elif compact and a >= 1e3:
        text = f"{a / 1e3:.1f}k"
    elif compact and (a >= 100 or a == 0):
        text = f"{a:.0f}"
    elif a >= 1000:
        text = f"{a:,.0f}"
    elif a >= 0.01 or a == 0:
        text = f"{a:,.2f}"
    else:
        text = f"{a:.2g}"
    return f"{sign}${text}"


def _tokens(value: Any) -> str:
    a = _num(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(a) >= limit:
            return f"{a / limit:.1f}{suffix}"
    return f"{a:.0f}" if a == round(a) else f"{a:.1f}"


def _fmt_f(value: float) -> str:
    """Coordinates for SVG: short and locale-free."""
    return f"{value:.1f}".rstrip("0").rstrip(".") if value != round(value) else str(round(value))


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _input_total(tokens: dict[str, Any]) -> float:
    return sum(max(_num(tokens.get(c)), 0.0) for c in COMPONENTS)
